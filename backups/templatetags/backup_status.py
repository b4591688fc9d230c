"""{% backup_freshness %}: the admin index's line on the newest backup, a warning when it is too old."""

from django import template
from django.utils.html import format_html
from django.utils.timesince import timesince

from backups.admin import freshness_warning
from backups.selectors import backup_freshness

register = template.Library()


@register.simple_tag
def backup_freshness_line() -> str:
    warning = freshness_warning()
    if warning:
        return format_html('<li class="nucleus-backup-warning">⚠ {}</li>', warning)
    newest = backup_freshness().newest
    return format_html("<li>made {} ago ({})</li>", timesince(newest.created_at), newest.id)
