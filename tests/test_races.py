"""Racing decisions from several processes at once, on SQLite and PostgreSQL: in every round
exactly one decision lands, every other is refused as already decided, and what was approved is
released once (bench/races.py runs the same at 1,000 rounds)."""

from __future__ import annotations

from bench.races import race


def test_racing_processes_decide_each_item_exactly_once(database_url):
    report = race(database_url, rounds=25, processes=3, seed=7)
    assert report["problems"] == []
    assert sum(report["wins"].values()) == 25 and report["refused"] == 50
    assert report["releases"] == report["wins"].get("approve", 0) + report["wins"].get("edit", 0)
