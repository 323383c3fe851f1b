"""The benchmark harness end to end on its cheapest system: a real identity server under real wrk
load, with the report and the raw figures written. No figure is asserted against a threshold
(speed belongs in ``make bench``); only that real measurements were taken and reported."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from benchrun import run_bench

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make test and make bench install it)"
)


@pytest.fixture(scope="module")
def identity_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("bench")
    done = run_bench(
        tmp,
        BENCH_SYSTEMS="identity-w1,nosuch-*,mlserver-sklearn-pw1",
        BENCH_PARTS="rest",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    raw = json.loads((tmp / "results" / "latest.json").read_text())
    return raw, (tmp / "results" / "latest.md").read_text()


def test_identity_server_is_loaded_by_wrk_and_measured(identity_run: tuple[dict, str]) -> None:
    raw, _ = identity_run
    (run,) = raw["rest"]["runs"]["identity-w1"]
    assert "error" not in run, run.get("error")
    assert run["cold_start_s"] > 0
    assert run["memory"]["processes"] >= 2  # seldon-core-microservice forks its workers
    assert run["memory"]["pss_mb"] > 0 and run["memory"]["rss_mb"] >= run["memory"]["pss_mb"]
    for load, rows in (("single", 1), ("batch", 50)):
        figures = run[load]
        assert figures["requests"] > 0 and figures["errors"] == 0, figures
        assert figures["rows_per_request"] == rows
        assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert run["command"][0].endswith("seldon-core-microservice")


def test_raw_figures_carry_versions_machine_and_settings(identity_run: tuple[dict, str]) -> None:
    raw, _ = identity_run
    assert raw["machine"]["cores"] == os.cpu_count()
    assert raw["versions"]["ours"]["seldon-core"] == "1.18.2"
    assert raw["settings"]["duration_s"] == 1 and raw["settings"]["batch_rows"] == 50
    assert "wrk -t1 -c4 -d1s" in raw["settings"]["wrk"]


def test_peers_switched_off_are_reported_not_measured(identity_run: tuple[dict, str]) -> None:
    raw, report = identity_run
    assert raw["unavailable"] == {"mlserver-sklearn-pw1": "BENCH_PEERS=0"}
    assert "`mlserver-sklearn-pw1`: BENCH_PEERS=0" in report


def test_report_shows_the_measured_medians(identity_run: tuple[dict, str]) -> None:
    raw, report = identity_run
    entry = raw["summary"]["systems"]["identity-w1"]
    single = entry["single"]["requests_per_s"]
    assert single == raw["rest"]["runs"]["identity-w1"][0]["single"]["requests_per_s"]
    row = next(line for line in report.splitlines() if "`identity-w1`" in line)
    assert f"| {single:,.0f} |" in row
    assert entry["single"]["vs_ceiling"] == 1.0


def test_bad_knob_stops_with_a_message(tmp_path: Path) -> None:
    done = run_bench(tmp_path, BENCH_DURATION="soon")
    assert done.returncode != 0
    assert "BENCH_DURATION='soon': expected a whole number" in done.stderr


def test_each_phase_is_timed_in_the_raw_figures_and_the_report(
    identity_run: tuple[dict, str],
) -> None:
    raw, report = identity_run
    phases = raw["phases"]
    assert set(phases) == {"warm_imports", "models", "rest"}  # BENCH_PARTS=rest, no peers
    assert all(seconds >= 0 for seconds in phases.values())
    assert phases["rest"] <= raw["seconds"]
    assert f"rest {phases['rest']:,.0f} s" in report


def test_skipped_systems_run_only_when_named_exactly():
    from bench.config import Config

    config = Config(systems=["*"], skipped=["kserve-sklearn-w2"])
    assert config.selects("kserve-sklearn-w1")
    assert not config.selects("kserve-sklearn-w2")
    named = Config(systems=["kserve-sklearn-w2"], skipped=["kserve-sklearn-w2"])
    assert named.selects("kserve-sklearn-w2")
    assert not Config(systems=["kserve-*"], skipped=["kserve-sklearn-w2"]).selects(
        "kserve-sklearn-w2"
    )
