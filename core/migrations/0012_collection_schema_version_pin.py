"""Collections pin a version of their schema; existing ones bound to another service's schema are pinned.

Until now every bound collection followed its schema's latest version, so the schema's owner could
block writes to other services' collections and learn about their records through registration. From
here on a collection bound to another service's schema is always pinned. The data step pins those that
exist to the latest version of their schema, which every stored record satisfies (registration checked
them against it), so that their writes validate exactly as before until their owner moves the pin.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F, Max, OuterRef, Subquery


def pin_foreign_bindings(apps, schema_editor):
    Collection = apps.get_model("core", "Collection")
    SchemaVersion = apps.get_model("schemas", "SchemaVersion")
    latest = (
        SchemaVersion.objects.filter(schema_id=OuterRef("schema_id"))
        .values("schema_id")
        .annotate(latest=Max("version"))
        .values("latest")
    )
    foreign = Collection.objects.filter(schema__isnull=False, schema_version__isnull=True).exclude(
        owner_id=F("schema__owner_id")
    )
    foreign.update(schema_version=Subquery(latest))


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0011_consumer_owner"),
        ("schemas", "0001_schema_registry"),
    ]

    operations = [
        migrations.AddField(
            model_name="collection",
            name="schema_version",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="The pinned version of the schema; empty: follow the latest (only the schema's owner).",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="collection",
            name="schema",
            field=models.ForeignKey(
                blank=True,
                help_text="Writes are validated against a version of this schema: the pinned one, else the latest.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="collections",
                to="schemas.schema",
            ),
        ),
        migrations.AddConstraint(
            model_name="collection",
            constraint=models.CheckConstraint(
                condition=models.Q(schema_version__isnull=True)
                | models.Q(schema__isnull=False, schema_version__gte=1),
                name="collection_schema_version_needs_schema",
                violation_error_message="Only a collection bound to a schema is pinned to a version of it.",
            ),
        ),
        migrations.RunPython(pin_foreign_bindings, migrations.RunPython.noop),
    ]
