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

- **priorities**: a call that has to wait holds a shared advisory lock for its run's priority
  (`_line`) on its connection; a call of lower priority goes ahead only when it can take, for an
  instant, the exclusive lock of every priority above its own, i.e. when nobody more urgent waits.
  An urgent hotline case's calls therefore pass a batch's waiting ones on every worker.

Waiting is back-pressure: a call waits for its turn (up to `DEW_LLM_QUEUE_TIMEOUT`, 600 s) and
only then fails its run, which stays retryable. A call keeps one connection from its gate's pool
while it waits and, with a concurrency limit, while it is in flight (its slot's).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from typing import TYPE_CHECKING

from dew.agents.limits import BUCKET, WINDOW, Limit, Ticket, span, waited_too_long

from .models import PRIORITIES

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
_IN_LINE = -1_000_000  # (key, _IN_LINE + priority): held shared by that priority's waiting calls
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
_CORRECT = "UPDATE endpoint_usage SET tokens = tokens + %s WHERE endpoint = %s AND window_start = %s"
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
    """The first half of the endpoint's advisory locks; the second is a slot's number, -1 for the
    count, or a priority's line (`_line`)."""
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
        # Token corrections of calls without a slot: never behind the calls that wait, which may
        # hold every connection of the pool above.
        self.spare = ConnectionPool(
            postgres_conninfo(settings.database_url),
            min_size=0,
            max_size=2,
            kwargs={"autocommit": True},
            open=True,
            name="dew-throttle-corrections",
        )

    def admit(self, limit: Limit, tokens: int, deadline: float, priority: int = 0) -> Ticket:
        key = _key(limit.endpoint)
        ahead = [_line(p) for p in sorted(set(PRIORITIES.values())) if p > priority]
        conn = self._connection(limit, deadline)  # the call's own: its place in line, then its slot
        slot: int | None = None
        window: float | None = None
        in_line = admitted = False
        waited_since = time.monotonic()
        pause = 0.02
        try:
            while True:
                wait = pause * random.uniform(0.5, 1.5)
                if self._first(conn, key, ahead):
                    if limit.concurrency is not None and slot is None:
                        slot = self._try_slot(conn, key, limit.concurrency)
                    if slot is not None or limit.concurrency is None:
                        if limit.rated:
                            window, room_in = self._try_count(conn, limit, key, tokens, deadline)
                        admitted = not limit.rated or window is not None
                        if admitted:
                            break
                        wait = room_in + random.uniform(0.0, 0.3)  # not all at the same instant
                        if slot is not None:  # no room for a while: no reason to keep others from a slot
                            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (key, slot))
                            slot = None
                if not in_line:
                    conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (key, _line(priority)))
                    in_line = True
                if time.monotonic() + wait > deadline:
                    break  # not admitted: the place in line is let go below
                time.sleep(wait)
                pause = min(pause * 1.5, 0.5)
            if in_line:
                conn.execute("SELECT pg_advisory_unlock_shared(%s, %s)", (key, _line(priority)))
        except BaseException:
            conn.close()  # frees any slot or place in line it holds: not back to the pool as it is
            self.pool.putconn(conn)
            raise
        if not admitted:  # the deadline came first; no slot is held while waiting for room
            self.pool.putconn(conn)
            raise waited_too_long(limit)
        ticket = Ticket(limit, tokens, window=window)
        if slot is None:
            self.pool.putconn(conn)
        else:
            ticket.slot = (conn, key, slot)
        waited = time.monotonic() - waited_since
        if waited > 1.0:
            log.info("waited for the endpoint", extra={"endpoint": limit.endpoint, "seconds": round(waited, 1)})
        return ticket

    def done(self, ticket: Ticket, used_tokens: int | None) -> None:
        """Correct the tokens counted for the call's second and free the slot. The model has answered by now: a fault
        here is logged, never allowed to turn a good reply into a failed run."""
        try:
            if ticket.window is not None and used_tokens is not None and used_tokens != ticket.tokens:
                args = (used_tokens - ticket.tokens, ticket.limit.endpoint, int(ticket.window))
                if ticket.slot is not None:  # on the slot's own connection, before the slot is let go
                    ticket.slot[0].execute(_CORRECT, args)  # type: ignore[index]
                else:
                    with self.spare.connection(timeout=10) as conn:
                        conn.execute(_CORRECT, args)
        except Exception:  # the count stays at the estimate
            log.exception("could not correct the endpoint's token count", extra={"endpoint": ticket.limit.endpoint})
        finally:
            self._free(ticket)

    def close(self) -> None:
        self.pool.close()
        self.spare.close()

    # -- priorities and calls at once ----------------------------------------------------------------
    @staticmethod
    def _first(conn: Connection, key: int, ahead: list[int]) -> bool:
        """Nobody of higher priority waits: every such line's lock can be taken (and is let go at once,
        with the statement's transaction)."""
        if not ahead:
            return True
        tries = " AND ".join(["pg_try_advisory_xact_lock(%s, %s)"] * len(ahead))
        row = conn.execute(f"SELECT {tries}", [v for line in ahead for v in (key, line)]).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _try_slot(conn: Connection, key: int, slots: int) -> int | None:
        for slot in random.sample(range(slots), slots):
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (key, slot)).fetchone()
            if row and row[0]:
                return slot
        return None

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
    def _try_count(
        self, conn: Connection, limit: Limit, key: int, tokens: int, deadline: float
    ) -> tuple[float | None, float]:
        """Count the call if the window has room: the second it was counted in; otherwise None and
        the seconds until the oldest second counted leaves the window."""
        from psycopg.errors import LockNotAvailable

        args = {"endpoint": limit.endpoint, "key": key, "bucket": BUCKET, "span": span(self.window),
                "tokens": tokens, "rpm": limit.rpm, "tpm": limit.tpm}  # fmt: skip
        try:
            with conn.transaction():
                conn.execute(_LOCK_TIMEOUT, (f"{max(1, int((deadline - time.monotonic()) * 1000))}ms",))
                conn.execute(_LOCK, args)
                row = conn.execute(_COUNT, args).fetchone()
        except LockNotAvailable:  # another worker held the count until the deadline
            raise waited_too_long(limit) from None
        if row is not None:
            return float(row[0]), 0.0
        left = conn.execute(_ROOM_IN, args).fetchone()
        room_in = left[0] if left and left[0] is not None else BUCKET
        return None, min(max(float(room_in), 0.01), span(self.window) + BUCKET)


def _line(priority: int) -> int:
    return _IN_LINE + priority


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
