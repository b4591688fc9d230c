from django.apps import AppConfig


class SchemasConfig(AppConfig):
    name = "schemas"
    verbose_name = "Schema registry"
    default_auto_field = "django.db.models.BigAutoField"
