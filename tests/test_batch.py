"""Batches: `dew run SCENARIO --inputs-file rows.csv|rows.jsonl` requests a run per row, after
checking every row, and follows them to their guardians' queues."""

from __future__ import annotations

import json

import pytest

from .test_engine import Workers, _jobs

HEADER = "facility_type,hazard,participants\n"


def _drills(tmp_path, n: int) -> str:
    path = tmp_path / "drills.csv"
    rows = [f'warehouse {i},fire,"fire brigade\nstaff of warehouse {i}"' for i in range(n)]
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def test_a_csv_batch_queues_a_draft_per_row(dew, tmp_path):
    result = dew("run", "drill-script", "--inputs-file", _drills(tmp_path, 5), "--as", "officer.wu", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["counts"] == {"awaiting_decision": 5}
    assert [r["guardian"] for r in out["runs"]] == ["zhao.lei"] * 5
    shown = dew("show", out["runs"][4]["item_id"], "--json")
    assert json.loads(shown.stdout)["run"]["inputs"]["facility_type"] == "warehouse 4"
    table = dew("run", "drill-script", "--inputs-file", _drills(tmp_path, 2), "--as", "officer.wu")
    assert table.exit_code == 0
    assert "2 runs of drill-script from drills.csv" in table.stdout
    assert "2 drafts wait for zhao.lei: dew inbox --as zhao.lei" in table.stdout


def test_a_jsonl_batch_shares_the_inputs_given_once(dew, tmp_path):
    # The investment screener's case: one company per run, the district's priorities for all.
    companies = [
        ("华储能源科技", "energy storage systems", 11.5, 450, 600, 0),
        ("锐芯半导体", "semiconductors", 18.2, 220, 850, 0),
        ("蓝海物流", "logistics", 1.2, 80, 120, 2),
    ]
    header = "company,sector,rd_ratio_pct,planned_jobs,planned_investment_million_cny,penalties_3y"
    lines = [json.dumps({"companies": f"{header}\n{','.join(map(str, c))}", "shortlist_size": 1}, ensure_ascii=False)
             for c in companies]  # fmt: skip
    path = tmp_path / "companies.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = dew("run", "investment-screener", "--inputs-file", path, "--input", "priorities=新能源与储能优先",
                 "--as", "officer.wu", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert len(runs) == 3 and {r["status"] for r in runs} == {"awaiting_decision"}
    inputs = json.loads(dew("show", runs[0]["item_id"], "--json").stdout)["run"]["inputs"]
    assert inputs["priorities"] == "新能源与储能优先" and inputs["shortlist_size"] == 1


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("rows.csv", HEADER + "a,fire,x\nb,,y\n", "rows.csv line 3: scenario 'drill-script' needs input 'hazard'"),
        ("rows.csv", HEADER + "a,fire\n", "rows.csv line 2: 2 cells, but the header names 3 columns"),
        ("rows.csv", "facility_type,hazard,participants,colour\na,b,c,d\n", "has no input named 'colour'"),
        ("rows.csv", "facility_type,,participants\n", "rows.csv line 1: the header must name each column once"),
        (
            "rows.jsonl",
            '{"facility_type": "a", "hazard": "b", "participants": "c"}\n{"facility_type": \n',
            "rows.jsonl line 2: not JSON",
        ),
        ("rows.jsonl", '["a", "b"]\n', "rows.jsonl line 1: each line must be a JSON object"),
        ("rows.jsonl", "\n\n", "rows.jsonl holds no rows"),
        ("rows.txt", "x", "--inputs-file takes a .csv or .jsonl file, not rows.txt"),
    ],
)
def test_a_bad_row_stops_the_batch_before_any_run(dew, tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = dew("run", "drill-script", "--inputs-file", path, "--as", "officer.wu")
    assert result.exit_code != 0 and result.stderr.startswith("Error: ")
    assert says in result.stderr
    assert json.loads(dew("runs", "--json").stdout) == []  # nothing was started


def test_failed_runs_are_counted_and_named(dew, tmp_path):
    dew.fake.fail(500, times=1)  # one model call of the batch fails: its run fails, the others go on
    result = dew("run", "drill-script", "--inputs-file", _drills(tmp_path, 3), "--as", "officer.wu",
                 "--concurrency", "1")  # fmt: skip
    assert result.exit_code != 0
    assert "1 of 3 runs failed" in result.stderr and "retry each with: dew retry RUN" in result.stderr
    assert (
        "failed: " in result.stderr
        and "awaiting_decision │    2" in result.stdout.replace("  ", " ").replace("  ", " ")
    ) or "awaiting_decision" in result.stdout


@pytest.mark.postgres
def test_a_batch_goes_to_the_workers_at_batch_priority(dew, tmp_path):
    from .conftest import _postgres_database

    for url in _postgres_database():
        dew.env.update(DEW_DATABASE_URL=url, DEW_ENGINE="procrastinate")
        workers = Workers(dew.env, tmp_path)
        try:
            workers.start("--concurrency", "4")
            workers.start("--concurrency", "4")
            workers.ready(url)
            result = dew("run", "drill-script", "--inputs-file", _drills(tmp_path, 8), "--as", "officer.wu", "--json")
        finally:
            workers.stop()
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["counts"] == {"awaiting_decision": 8}
        jobs = _jobs(url)
        assert len(jobs) == 8 and {j["status"] for j in jobs} == {"succeeded"}
    from dew.guardians import engine

    engine._executors.clear()
