"""manage.py create_service NAME [--description TEXT]: ensure a service exists and print a new token."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import services
from core.errors import NucleusError
from core.management.commands._common import database_reason
from core.principals import Actor


class Command(BaseCommand):
    help = "Create the service if needed and print a new bearer token for it as the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Service name, e.g. taxon.")
        parser.add_argument("--description", default=None, help="Sets the service's description.")
        parser.add_argument("--label", default="", help="A label for the token, e.g. where it is deployed.")
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="The token expires after N days."
        )

    def handle(self, *args, name, description, label, expires_in_days, **options):
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        try:
            actor = Actor.system("create_service")
            with database_reason():
                service, created = services.service_ensure(name=name, description=description, actor=actor)
                token, plain = services.token_issue(
                    service=service, label=label, expires_at=expires_at, actor=actor
                )
        except NucleusError as exc:
            raise CommandError(exc.detail)
        verb = "Created service" if created else "Service"
        self.stderr.write(f"{verb} {service.name}; new token {token.prefix}… (shown once, store it now):")
        self.stdout.write(plain)
