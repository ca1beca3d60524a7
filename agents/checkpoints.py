"""The official LangGraph checkpoint saver for a database URL (SQLite file or PostgreSQL)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


def parse_url(url: str | URL) -> URL:
    """A database URL as SQLAlchemy reads it (dew's spelling throughout: `sqlite:///FILE`,
    `postgresql://user@host/db`, with or without a `+driver`)."""
    try:
        return make_url(url)
    except ArgumentError as e:
        raise ValueError(f"not a database URL: {url}") from e


def sqlite_path(url: str | URL) -> str:
    """The file of a `sqlite:///path` URL."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise ValueError(f"not a SQLite file URL: {url}")
    return parsed.database


def postgres_conninfo(url: str | URL) -> str:
    """A libpq connection string (what psycopg connects with) from a SQLAlchemy URL such as
    `postgresql+psycopg://`. Keyword by keyword, not the URL rendered again: SQLAlchemy renders a
    space in a query value as "+", which libpq keeps as it is (`options=-c search_path=…` broke)."""
    from psycopg.conninfo import make_conninfo

    parsed = parse_url(url)
    params = parsed.translate_connect_args(username="user", database="dbname")
    params.update({k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()})
    return make_conninfo("", **params)


def saver_pool(url: str, max_size: int) -> Any:
    """A pool of PostgreSQL connections for checkpoint savers (psycopg_pool.ConnectionPool, opened),
    the saver's tables migrated: the savers of a worker's job threads each take a connection only
    for the statement at hand, instead of each keeping one open for as long as the worker lives."""
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    with open_saver(url):  # migrates, once, on a connection of its own (see _setup_once)
        pass
    return ConnectionPool(
        postgres_conninfo(url), min_size=1, max_size=max(2, max_size), name="dew-checkpoints", open=True,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=ConnectionPool.check_connection,  # a connection a database restart broke is replaced
    )  # fmt: skip


@contextmanager
def open_saver(url: str, pool: Any = None) -> Iterator[BaseCheckpointSaver]:
    """The official LangGraph saver of the database's backend. On PostgreSQL, `pool` (saver_pool)
    lends the saver its connections; without one the saver keeps a connection of its own."""
    backend = parse_url(url).get_backend_name()
    if backend == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        lite = sqlite3.connect(sqlite_path(url), check_same_thread=False, timeout=30)
        try:
            lite.execute("PRAGMA busy_timeout = 30000")
            lite_saver = SqliteSaver(lite)
            lite_saver.setup()
            yield lite_saver
        finally:
            lite.close()
    elif backend == "postgresql" and pool is not None:
        from langgraph.checkpoint.postgres import PostgresSaver

        # Each saver has its own lock (LangGraph's saver holds one around every statement), so
        # threads with savers of their own on one pool never wait for each other's checkpoints.
        # The tables were migrated when the pool was made.
        yield PostgresSaver(pool)
    elif backend == "postgresql":
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        with Connection.connect(
            postgres_conninfo(url), autocommit=True, prepare_threshold=0, row_factory=dict_row
        ) as conn:
            saver = PostgresSaver(conn)
            _setup_once(conn, saver)
            yield saver
    else:
        raise ValueError(f"unsupported database URL for checkpoints: {url}")


def _setup_once(conn: Any, saver: Any) -> None:
    """Migrate the saver's tables, one process at a time. Poll for the lock rather than wait on it:
    setup's CREATE INDEX CONCURRENTLY waits for every running statement, including a blocked
    pg_advisory_lock, which would deadlock."""
    while not (conn.execute("SELECT pg_try_advisory_lock(74657702) AS ok").fetchone() or {}).get("ok"):
        time.sleep(0.05)
    try:
        saver.setup()
    finally:
        conn.execute("SELECT pg_advisory_unlock(74657702)")
