"""Alembic environment: dew runs migrations programmatically on a connection it passes in."""

from alembic import context
from sqlmodel import SQLModel

from dew.guardians import models  # noqa: F401  (registers the tables)

target_metadata = SQLModel.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # The LangGraph checkpoint tables share the database but are the saver's to manage.
    return not (type_ == "table" and reflected and compare_to is None)


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("dew runs its migrations itself (dew.guardians.db.upgrade); there is no alembic.ini")
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    include_object=include_object,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
