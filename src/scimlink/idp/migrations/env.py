"""Alembic environment of the directory half; the engine comes from the caller (see idp.schema)."""

from alembic import context

from scimlink.idp.models import IdpBase

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=IdpBase.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    version_table=context.config.get_main_option("version_table") or "alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
