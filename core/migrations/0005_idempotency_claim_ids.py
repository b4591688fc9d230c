"""Give every idempotency claim its own id, so that a request whose claim was taken over cannot
complete or release the new owner's claim. Existing rows get fresh ids."""

import uuid

from django.db import migrations, models


def fill_claims(apps, schema_editor):
    IdempotencyKey = apps.get_model("core", "IdempotencyKey")
    for pk in IdempotencyKey.objects.filter(claim__isnull=True).values_list("pk", flat=True).iterator():
        IdempotencyKey.objects.filter(pk=pk).update(claim=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("core", "0004_collection_schema")]

    operations = [
        migrations.AddField(model_name="idempotencykey", name="claim", field=models.UUIDField(null=True)),
        migrations.RunPython(fill_claims, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="idempotencykey",
            name="claim",
            field=models.UUIDField(
                help_text="Which request holds the key; a taken-over claim is void.", unique=True
            ),
        ),
    ]
