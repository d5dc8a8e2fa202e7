"""The staff audit log (core.models.AuditEntry), append-only down to the database.

On PostgreSQL a trigger refuses every UPDATE and DELETE of an entry except the
``SET NULL`` of ``actor`` that deleting a user makes (TRUNCATE, which a test database
flush uses, is a different statement and not refused). On SQLite, for development, a
trigger refuses updates; deletes are left to the model (the test flush deletes rows).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

POSTGRESQL_FORWARD = """
CREATE OR REPLACE FUNCTION core_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL
       AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;  -- the user was deleted: on_delete=SET_NULL
    END IF;
    RAISE EXCEPTION 'audit entries are append-only' USING ERRCODE = 'restrict_violation';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER core_auditentry_append_only BEFORE UPDATE OR DELETE ON core_auditentry
    FOR EACH ROW EXECUTE FUNCTION core_auditentry_append_only();
"""
POSTGRESQL_BACKWARD = """
DROP TRIGGER IF EXISTS core_auditentry_append_only ON core_auditentry;
DROP FUNCTION IF EXISTS core_auditentry_append_only();
"""
SQLITE_FORWARD = [
    """CREATE TRIGGER core_auditentry_no_update BEFORE UPDATE OF
           id, actor_username, at, action, content_type_id, object_id, object_repr, changes, reason, request_id
       ON core_auditentry BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
    """CREATE TRIGGER core_auditentry_no_actor_change BEFORE UPDATE OF actor_id ON core_auditentry
       WHEN NEW.actor_id IS NOT NULL BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END""",
]
SQLITE_BACKWARD = ["DROP TRIGGER IF EXISTS core_auditentry_no_update", "DROP TRIGGER IF EXISTS core_auditentry_no_actor_change"]


def guard_create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_FORWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def guard_drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRESQL_BACKWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("core", "0003_cache_table"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("actor_username", models.CharField(blank=True, max_length=150, verbose_name="staff username")),
                ("at", models.DateTimeField(db_index=True, verbose_name="at")),
                ("action", models.CharField(choices=[("add", "Added"), ("change", "Changed"), ("delete", "Deleted"), ("action", "Admin action"), ("adjust", "Points adjusted")], max_length=16, verbose_name="action")),
                ("object_id", models.CharField(max_length=64, verbose_name="object id")),
                ("object_repr", models.CharField(max_length=200, verbose_name="object")),
                ("changes", models.JSONField(blank=True, default=dict, verbose_name="changes")),
                ("reason", models.TextField(blank=True, verbose_name="reason")),
                ("request_id", models.CharField(blank=True, max_length=64, verbose_name="request id")),
                ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL, verbose_name="staff user")),
                ("content_type", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="contenttypes.contenttype", verbose_name="type")),
            ],
            options={
                "verbose_name": "audit entry",
                "verbose_name_plural": "audit entries",
                "indexes": [
                    models.Index(fields=["content_type", "object_id", "-at"], name="core_audit_object_idx"),
                    models.Index(fields=["actor", "-at"], name="core_audit_actor_idx"),
                ],
            },
        ),
        migrations.RunPython(guard_create, guard_drop, elidable=False),
    ]
