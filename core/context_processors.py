from django.conf import settings


def nucleus_build(request) -> dict:
    """The running version and revision, shown in the admin."""
    return {"nucleus_version": settings.NUCLEUS_VERSION, "nucleus_revision": settings.NUCLEUS_REVISION}
