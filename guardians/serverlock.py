"""One server executes a workspace's runs.

When it starts, a server takes up every run left queued or running (`execution.unfinished`); two
servers on one workspace would both drive the same runs. Until runs move to a distributed engine
with leases, the server holds a lock for its lifetime and a second one is refused with a clear
message: a PostgreSQL advisory lock on a connection of its own (servers on other machines share
the database, not the folder), or an exclusive lock on `<home>/serve.lock` for a SQLite file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from dew.guardians.errors import InvalidState

if TYPE_CHECKING:
    from .workspace import Settings

# Advisory lock keys in use: 74657701 migrations (db.py), 74657702 checkpoint setup (agents/checkpoints.py).
LOCK_KEY = 74657703


@contextmanager
def serving(settings: Settings) -> Iterator[None]:
    if make_url(settings.database_url).get_backend_name() == "postgresql":
        with _advisory(settings):
            yield
    else:
        with _file_lock(settings):
            yield


@contextmanager
def _advisory(settings: Settings) -> Iterator[None]:
    from psycopg import Connection

    from dew.agents.checkpoints import postgres_conninfo

    with Connection.connect(postgres_conninfo(settings.database_url), autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if not row or not row[0]:
            raise InvalidState(
                f"another dew server is already serving the database {settings.database_label}; "
                "one server executes a workspace's runs (stop the other, or point this one at another database)"
            )
        yield  # the lock lasts as long as this connection


@contextmanager
def _file_lock(settings: Settings) -> Iterator[None]:
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "serve.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidState(
                f"another dew server is already serving the workspace {settings.home} (it holds {path}); "
                "one server executes a workspace's runs"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock
