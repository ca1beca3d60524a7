"""Model endpoint limits that hold across every worker on a PostgreSQL database.

`agents/limits.py` says what the limits are and admits calls within one process. A `dew worker`
(and a server on the distributed engine) installs `DbGate` instead, so that eight calls at once
means eight across all machines:

- **calls at once**: a call holds one of the endpoint's N advisory locks (`pg_try_advisory_lock`)
  on a connection of its own while it is in flight. A worker that dies loses its connection, and
  PostgreSQL releases its locks: a killed worker never keeps a slot.
- **requests and tokens per minute** (any sixty seconds: agents/limits.py says why not each
  minute of the clock): one row per endpoint and second (`endpoint_usage`), by the database's
  clock. A call is counted by a conditional upsert that succeeds only if the seconds of the last
  window leave room, made under a transaction-level advisory lock of the endpoint's so that two
  workers' sums cannot both see the same room; otherwise it waits until the oldest counted second
  leaves the window. Tokens are counted on admission as an estimate (prompt plus the most the
  reply may take) and corrected by what the reply used.

Waiting is back-pressure: a call waits for its turn (up to `DEW_LLM_QUEUE_TIMEOUT`, 600 s) and
only then fails its run, which stays retryable.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from typing import TYPE_CHECKING

from dew.agents.limits import BUCKET, WINDOW, Limit, Ticket, span, waited_too_long

if TYPE_CHECKING:
    from psycopg import Connection

    from .workspace import Settings

log = logging.getLogger("dew.throttle")

# The statement after the lock sees every count committed before it (READ COMMITTED takes a new
# snapshot per statement); in one statement with the lock it would not. The lock is waited for no
# longer than the call may wait: a worker stuck inside its count (a frozen process, a lost
# network) must not hold every other worker's calls past their deadline.
_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"
_LOCK = "SELECT pg_advisory_xact_lock(%(key)s, -1)"  # slots are (key, 0…concurrency-1)
_COUNT = """
WITH now_ AS (
    SELECT floor(extract(epoch FROM clock_timestamp()) / %(bucket)s)::bigint * %(bucket)s AS second
), used AS (
    SELECT coalesce(sum(u.requests), 0) AS requests, coalesce(sum(u.tokens), 0) AS tokens
      FROM endpoint_usage u, now_
     WHERE u.endpoint = %(endpoint)s AND u.window_start BETWEEN now_.second - %(span)s AND now_.second + %(span)s
)
INSERT INTO endpoint_usage (endpoint, window_start, requests, tokens)
SELECT %(endpoint)s, now_.second, 1, %(tokens)s
  FROM now_, used
 WHERE (%(rpm)s::integer IS NULL OR used.requests + 1 <= %(rpm)s::integer)
   AND (%(tpm)s::bigint IS NULL OR used.tokens = 0 OR used.tokens + %(tokens)s <= %(tpm)s::bigint)
ON CONFLICT (endpoint, window_start) DO UPDATE
   SET requests = endpoint_usage.requests + 1, tokens = endpoint_usage.tokens + EXCLUDED.tokens
RETURNING window_start
"""
# Seconds until the oldest second counted in the window leaves it. Seconds "ahead" of the clock
# (it stepped back) count as well, up to a window ahead: a small step keeps what was counted, a
# large one forgets it rather than holding the endpoint shut for as long.
_ROOM_IN = """
WITH now_ AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS at)
SELECT min(window_start) + %(span)s + %(bucket)s - now_.at
  FROM endpoint_usage, now_
 WHERE endpoint = %(endpoint)s
   AND window_start BETWEEN floor(now_.at / %(bucket)s)::bigint * %(bucket)s - %(span)s
                        AND floor(now_.at / %(bucket)s)::bigint * %(bucket)s + %(span)s
 GROUP BY now_.at
"""


def _key(endpoint: str) -> int:
    """The first half of the endpoint's advisory locks (the second is the slot number)."""
    return int.from_bytes(hashlib.sha256(f"dew-endpoint:{endpoint}".encode()).digest()[:4], "big", signed=True)


class DbGate:
    def __init__(self, settings: Settings, *, max_connections: int = 16, window: float = WINDOW):
        from psycopg_pool import ConnectionPool

        from dew.agents.checkpoints import postgres_conninfo

        self.window = window
        self.pool = ConnectionPool(
            postgres_conninfo(settings.database_url),
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True},
            open=True,
            name="dew-throttle",
        )

    def admit(self, limit: Limit, tokens: int, deadline: float) -> Ticket:
        ticket = Ticket(limit, tokens)
        waited_since = time.monotonic()
        if limit.concurrency is not None:
            ticket.slot = self._slot(limit, deadline)
        try:
            if limit.rated:
                ticket.window = self._count(limit, tokens, deadline)
        except BaseException:
            self._free(ticket)
            raise
        waited = time.monotonic() - waited_since
        if waited > 1.0:
            log.info("waited for the endpoint", extra={"endpoint": limit.endpoint, "seconds": round(waited, 1)})
        return ticket

    def done(self, ticket: Ticket, used_tokens: int | None) -> None:
        """Correct the minute's tokens and free the slot. The model has answered by now: a fault
        here is logged, never allowed to turn a good reply into a failed run."""
        try:
            if ticket.window is not None and used_tokens is not None and used_tokens != ticket.tokens:
                with self.pool.connection(timeout=10) as conn:
                    conn.execute(
                        "UPDATE endpoint_usage SET tokens = tokens + %s WHERE endpoint = %s AND window_start = %s",
                        (used_tokens - ticket.tokens, ticket.limit.endpoint, int(ticket.window)),
                    )
        except Exception:  # the count stays at the estimate
            log.exception("could not correct the endpoint's token count", extra={"endpoint": ticket.limit.endpoint})
        finally:
            self._free(ticket)

    def close(self) -> None:
        self.pool.close()

    # -- calls at once ------------------------------------------------------------------------------
    def _slot(self, limit: Limit, deadline: float) -> tuple[Connection, int, int]:
        assert limit.concurrency is not None
        key = _key(limit.endpoint)
        pause = 0.02
        while True:
            conn = self._connection(limit, deadline)
            try:
                for slot in random.sample(range(limit.concurrency), limit.concurrency):
                    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (key, slot)).fetchone()
                    if row and row[0]:
                        return conn, key, slot
            except BaseException:
                conn.close()  # it may hold a slot it was granted as it was interrupted: not back to the pool
                self.pool.putconn(conn)
                raise
            self.pool.putconn(conn)
            if time.monotonic() + pause > deadline:
                raise waited_too_long(limit)
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 1.5, 0.5)

    def _connection(self, limit: Limit, deadline: float) -> Connection:
        """A connection of the gate's pool, waited for no longer than the call may wait."""
        from psycopg_pool import PoolTimeout

        try:
            return self.pool.getconn(timeout=max(0.1, deadline - time.monotonic()))
        except PoolTimeout:
            raise waited_too_long(limit) from None

    def _free(self, ticket: Ticket) -> None:
        if ticket.slot is None:
            return
        held: tuple[Connection, int, int] = ticket.slot  # type: ignore[assignment]
        conn, key, slot = held
        ticket.slot = None
        try:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (key, slot))
        except Exception:  # closing the connection frees the slot as surely
            log.exception(
                "could not free an endpoint slot; closing its connection", extra={"endpoint": ticket.limit.endpoint}
            )
            conn.close()
        finally:
            self.pool.putconn(conn)

    # -- requests and tokens per minute ---------------------------------------------------------------
    def _count(self, limit: Limit, tokens: int, deadline: float) -> float:
        args = {"endpoint": limit.endpoint, "key": _key(limit.endpoint), "bucket": BUCKET,
                "span": span(self.window), "tokens": tokens, "rpm": limit.rpm, "tpm": limit.tpm}  # fmt: skip
        from psycopg.errors import LockNotAvailable

        while True:
            conn = self._connection(limit, deadline)
            try:
                try:
                    with conn.transaction():
                        conn.execute(_LOCK_TIMEOUT, (f"{max(1, int((deadline - time.monotonic()) * 1000))}ms",))
                        conn.execute(_LOCK, args)
                        row = conn.execute(_COUNT, args).fetchone()
                except LockNotAvailable:  # another worker held the count until the deadline
                    raise waited_too_long(limit) from None
                if row is not None:
                    return float(row[0])
                left = conn.execute(_ROOM_IN, args).fetchone()
            finally:
                self.pool.putconn(conn)
            room_in = left[0] if left and left[0] is not None else BUCKET
            room_in = min(max(float(room_in), 0.01), span(self.window) + BUCKET)
            wait = room_in + random.uniform(0.0, 0.3)  # not all at the same instant
            if time.monotonic() + wait > deadline:
                raise waited_too_long(limit)
            time.sleep(wait)


def forget_old_usage(settings: Settings, keep_seconds: int = 3600) -> int:
    """Drop the counts of windows long past (the sweep calls this)."""
    from psycopg import Connection

    from dew.agents.checkpoints import postgres_conninfo

    with Connection.connect(postgres_conninfo(settings.database_url), autocommit=True) as conn:
        done = conn.execute(
            "DELETE FROM endpoint_usage WHERE window_start < extract(epoch FROM clock_timestamp()) - %s",
            (keep_seconds,),
        )
        return done.rowcount
