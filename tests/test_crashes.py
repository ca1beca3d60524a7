"""Workers and the server killed with SIGKILL at random moments while governed runs are requested,
drafted, decided, released and handed off: nothing lost, nothing done twice, every release's file
and record together, the audit trail intact (bench/crashes.py runs the same at 200 runs)."""

from __future__ import annotations

import pytest

from bench.crashes import crash

from .conftest import POSTGRES_ADMIN_URL, postgres_admin


@pytest.mark.postgres
def test_kill_nine_at_random_loses_nothing_and_does_nothing_twice():
    postgres_admin().close()  # skips (or fails under DEW_REQUIRE_POSTGRES) without a server
    report = crash(POSTGRES_ADMIN_URL, runs=12, workers=2, seed=11)
    assert report["problems"] == []
    assert report["accepted"] == 12 and report["kills"] >= 3 and report["releases"] >= 1
    assert report["audit_verify"] == "ok"
