from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Nucleus core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import reversion

        from core.models import Collection, Grant, Record, Service, ServiceToken

        for model in (Record, Collection, Grant, Service):
            if not reversion.is_registered(model):
                reversion.register(model)
        if not reversion.is_registered(ServiceToken):
            reversion.register(ServiceToken, exclude=["token_hash"])
