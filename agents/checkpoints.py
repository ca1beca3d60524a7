"""The official LangGraph checkpoint saver for a database URL (SQLite file or PostgreSQL)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///path` URL (SQLAlchemy's spelling, which dew uses throughout)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite file URL: {url}")
    return url[len("sqlite:///") :]


def postgres_conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (`postgresql+psycopg://` → `postgresql://`)."""
    _scheme, rest = url.split("://", 1)
    return "postgresql://" + rest


@contextmanager
def open_saver(url: str) -> Iterator[BaseCheckpointSaver]:
    if url.startswith("sqlite"):
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(sqlite_path(url), check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
    elif url.startswith("postgres"):
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        with Connection.connect(
            postgres_conninfo(url), autocommit=True, prepare_threshold=0, row_factory=dict_row
        ) as conn:
            saver = PostgresSaver(conn)
            # setup() migrates the saver's tables; two processes doing it at once collide. Poll for
            # the lock rather than wait on it: setup's CREATE INDEX CONCURRENTLY waits for every
            # running statement, including a blocked pg_advisory_lock, which would deadlock.
            while not conn.execute("SELECT pg_try_advisory_lock(74657702) AS ok").fetchone()["ok"]:
                time.sleep(0.05)
            try:
                saver.setup()
            finally:
                conn.execute("SELECT pg_advisory_unlock(74657702)")
            yield saver
    else:
        raise ValueError(f"unsupported database URL for checkpoints: {url}")
