"""GET /metrics: Prometheus text for operators, a scrape token and configured networks (README, Metrics).

Request and database metrics come from django-prometheus: its middleware counts and times requests by
view, method and status, its database backends count and time statements. Under gunicorn every worker
writes them to files in PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py sets it up) and a scrape adds the
files of all workers up, so whichever worker answers, the figures are those of the whole server.

Nucleus' own gauges (records per collection, stream heads, consumer lags, backup ages, pending
migrations) are read from the database at scrape time by NucleusCollector. It is registered only on
the registry this view builds for one scrape, never on a process-wide one: the gauges are computed
once per scrape, not once per worker, and a deleted collection's series simply disappears.
"""

import hmac
import logging
import math
import os
from ipaddress import ip_address

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from core.api.problems import problem_response
from core.models import CollectionKind
from core.status import backup_state, collection_states, consumer_states, pending_migrations

logger = logging.getLogger("nucleus.metrics")


class NucleusCollector:
    """Nucleus' gauges, computed when scraped with a few aggregate queries (core.status); no record sizes."""

    def collect(self):
        build = InfoMetricFamily("nucleus_build", "The running Nucleus version and revision.")
        build.add_metric([], {"version": settings.NUCLEUS_VERSION, "revision": settings.NUCLEUS_REVISION})
        yield build
        up = GaugeMetricFamily(
            "nucleus_database_up", "1 when the Nucleus gauges could be read from the database, else 0."
        )
        try:
            collections = collection_states()
            consumers = consumer_states()
            backups = backup_state()
            pending = pending_migrations()
        except DatabaseError as exc:
            logger.warning("The metrics could not read the database: %s", exc.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        records = GaugeMetricFamily(
            "nucleus_collection_records", "Records per records collection.", labels=["collection"]
        )
        heads = GaugeMetricFamily(
            "nucleus_stream_last_offset", "The offset of the newest event of each stream.", labels=["stream"]
        )
        for state in collections:
            if state.kind == CollectionKind.STREAM:
                heads.add_metric([state.name], state.last_offset)
            else:
                records.add_metric([state.name], state.records)
        lags = GaugeMetricFamily(
            "nucleus_consumer_lag",
            "Events of the stream a consumer has not processed yet (last offset minus its position).",
            labels=["stream", "service", "consumer"],
        )
        for consumer in consumers:
            lags.add_metric([consumer.stream, consumer.service, consumer.consumer], consumer.lag)
        yield from (records, heads, lags)

        yield GaugeMetricFamily(
            "nucleus_backup_age_seconds",
            "Seconds since the newest usable backup of this database was taken; +Inf when there is none.",
            value=_age(backups.seconds_since(backups.newest_at)),
        )
        yield GaugeMetricFamily(
            "nucleus_verified_backup_age_seconds",
            "Seconds since the newest backup that passed verification was taken; +Inf when there is none.",
            value=_age(backups.seconds_since(backups.newest_verified_at)),
        )
        yield GaugeMetricFamily(
            "nucleus_migrations_pending",
            "Migrations the code has that the database lacks.",
            value=len(pending),
        )


def _age(seconds: float | None) -> float:
    return math.inf if seconds is None else max(seconds, 0.0)


# What a staff session needs to read /metrics: the view permissions of the control-room panels whose
# figures the Nucleus gauges export (superusers hold them all).
METRICS_PERMISSIONS = ("core.view_collection", "core.view_consumerposition", "backups.view_backup")


def metrics_access(request) -> str | None:
    """Why the caller may read /metrics: "token", "network" or "operator"; None when it may not.

    An operator is an active staff user holding METRICS_PERMISSIONS, signed in to the admin.

    Service tokens are no way in: services are not operators. The client address is the TCP peer's
    (REMOTE_ADDR), never a forwarded header, so a load balancer's clients are not its network.
    """
    token = settings.NUCLEUS_METRICS_TOKEN
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(credential.encode(), token.encode()):
        return "token"
    if settings.NUCLEUS_METRICS_ALLOW_CIDRS:
        try:
            address = ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            address = None
        if address is not None and getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        if address is not None and any(
            address in network for network in settings.NUCLEUS_METRICS_ALLOW_CIDRS
        ):
            return "network"
    user = getattr(request, "user", None)  # the admin session (AuthenticationMiddleware)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        # The gauges name every collection, stream, consumer and backup: only for those who may see
        # them in the control room too.
        return "operator" if user.has_perms(METRICS_PERMISSIONS) else None
    return None


@require_GET
def metrics(request):
    """The Prometheus text exposition; 403 problem for callers metrics_access() turns away."""
    access = metrics_access(request)
    if access is None:
        return problem_response(
            403,
            "Metrics are for operators, the metrics token and the networks Nucleus is configured to trust.",
        )
    if access == "token":
        request.principal_label = "metrics-token"
    scrape = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(scrape)
        registries = [scrape]
    else:  # one process (runserver, manage.py, tests): the process-wide registry holds the counters
        registries = [REGISTRY, scrape]
    scrape.register(NucleusCollector())
    body = b"".join(generate_latest(registry) for registry in registries)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
