"""Engines for the workspace database: a SQLite file (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlmodel import Session, SQLModel, create_engine

from dew.guardians.errors import NotFound, StorageError

Row = TypeVar("Row", bound=SQLModel)


def normalize_url(url: str) -> str:
    """The URL SQLAlchemy connects with: PostgreSQL through psycopg 3, whatever driver it named."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"'{url}' is not a database URL: use sqlite:///FILE or postgresql://USER@HOST/DB") from None
    if parsed.get_backend_name() == "postgresql" or parsed.drivername == "postgres":
        # Only the scheme changes, as text: SQLAlchemy renders a space in a query value as "+",
        # which it then reads back as "+" (libpq options such as `-c search_path=…` broke).
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """An engine on the workspace's database. `pool_size` bounds a PostgreSQL engine's connections
    (that many kept, as many again opened for a burst and closed after it): a worker's job threads
    share one engine, and most of the time want few connections at once."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy, not pysqlite, say when transactions begin (see _on_begin).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            _enable_wal(cur)
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # Take the write lock up front: two deciders then queue instead of failing on upgrade.
            # A `reading` unit begins deferred: a WAL reader holds a snapshot and blocks no writer.
            conn.exec_driver_sql("BEGIN" if conn.info.pop(READING, False) else "BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql":
        if pool_size is None:
            return create_engine(url, pool_pre_ping=True)
        return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
    shown = parsed.render_as_string(hide_password=True)
    raise StorageError(f"unsupported database URL '{shown}': use sqlite:///FILE or postgresql://USER@HOST/DB")


def _enable_wal(cur, attempts: int = 200) -> None:
    """Switch a new database file to WAL. The switch needs an exclusive lock and SQLite does not
    wait for it (no busy handler), so processes opening a fresh file at once take turns here."""
    for _ in range(attempts):
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e):
                raise
        time.sleep(0.05)
    raise StorageError("could not switch the SQLite database to WAL mode: it stayed locked by another process")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: a state change and its audit events commit together or not at all."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


READING = "dew_reading"


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A read-only unit over one consistent snapshot that holds up no writer: for the long reads
    (verify, reports, exports, checkpoints) that a server recording decisions must not wait for.
    SQLite: a deferred transaction, which in WAL mode reads a snapshot and takes no lock;
    PostgreSQL: REPEATABLE READ, READ ONLY (one snapshot for every statement of the unit)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            conn.info[READING] = True
        with conn.begin(), Session(bind=conn, expire_on_commit=False) as session:
            yield session


def lock_row(session: Session, model: type[Row], key: Any) -> Row | None:
    """Fetch a row for update (PostgreSQL row lock; SQLite already holds the write lock)."""
    return session.get(model, key, with_for_update=True)


def must_get(session: Session, model: type[Row], key: Any, *, lock: bool = False) -> Row:
    """`session.get` (for update, with `lock`) of a row that must exist: NotFound names what is missing."""
    row = session.get(model, key, with_for_update=lock)
    if row is None:
        raise NotFound(f"no {model.__name__.lower()} {key}")
    return row


def locked(session: Session, model: type[Row], key: Any) -> Row:
    """`lock_row` for a row that must exist."""
    return must_get(session, model, key, lock=True)


HEAD = "0011"  # the newest migration (tests/storage/test_conformance.py checks it against alembic's head)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration. Safe to call from many processes at once.
    A database already at the newest is recognised by one query, without loading alembic
    (a fifth of a second each command would otherwise pay)."""
    try:
        with engine.connect() as conn:
            conn.info[READING] = True  # a look, not a write: no write lock on SQLite
            if conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD:
                return
    except DBAPIError:
        pass  # no version table yet: a new database
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(74657701)"))  # one migrator at a time
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
