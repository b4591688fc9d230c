"""Consumer positions belong to the service that keeps them; names are unique per service and stream.

Existing positions were shared by every service that could read the stream; they are given to the
stream's owner, whose consumers they most likely are. Other services start their own at 0.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def give_positions_to_stream_owners(apps, schema_editor):
    Collection = apps.get_model("core", "Collection")
    ConsumerPosition = apps.get_model("core", "ConsumerPosition")
    stream_owner = Collection.objects.filter(pk=OuterRef("stream_id")).values("owner_id")
    ConsumerPosition.objects.update(owner_id=Subquery(stream_owner))
    if schema_editor.connection.vendor == "postgresql":
        # Check the new foreign keys now: PostgreSQL refuses to ALTER a table with pending checks.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0010_throttle_window"),
    ]

    operations = [
        migrations.AddField(
            model_name="consumerposition",
            name="owner",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="consumer_positions",
                to="core.service",
            ),
        ),
        migrations.RunPython(give_positions_to_stream_owners, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="consumerposition",
            name="owner",
            field=models.ForeignKey(
                help_text="The service that keeps this consumer; only it (and operators) may move it.",
                on_delete=django.db.models.deletion.CASCADE,
                related_name="consumer_positions",
                to="core.service",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="consumerposition",
            name="consumer_unique_per_stream",
        ),
        migrations.AddConstraint(
            model_name="consumerposition",
            constraint=models.UniqueConstraint(
                fields=("stream", "owner", "consumer"),
                name="consumer_unique_per_service_and_stream",
                violation_error_message="This service already has a consumer of this name in this stream.",
            ),
        ),
        migrations.AlterModelOptions(
            name="consumerposition",
            options={"ordering": ["stream_id", "owner_id", "consumer"]},
        ),
    ]
