"""The paired ceiling part: real servers side by side under real wrk load, the medians of the
ratios within cycles, the CPU read from /proc, and the report and targets that use them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from bench import paired, report
from benchrun import run_bench


def _cycle(ours_rps: float, ceiling_rps: float, ours_cpu: float, ceiling_cpu: float) -> dict:
    return {
        "ours": {"requests_per_s": ours_rps, "cpu_us_per_request": ours_cpu, "errors": 0},
        "ceiling": {"requests_per_s": ceiling_rps, "cpu_us_per_request": ceiling_cpu, "errors": 0},
    }


def test_the_figure_is_the_median_of_ratios_within_cycles():
    # The host slows down in the middle: the ratio within each cycle stays 0.9.
    cycles = [_cycle(900, 1000, 1100, 1000), _cycle(450, 500, 2200, 2000), _cycle(90, 100, 1, 1)]
    found = paired.summarize_cycles("identity-w1", cycles)
    assert found["ratio"] == pytest.approx(0.9)
    assert found["cpu_ratio"] == pytest.approx(1000 / 1100, abs=1e-3)
    assert found["ratio_q1"] <= found["ratio"] <= found["ratio_q3"]
    assert found["ceiling"] == "identity-w1"


def test_session_cpu_counts_every_process_of_a_session():
    burn = "import subprocess, sys, time\n" + (
        "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "end = time.time() + 30\n"
        "while time.time() < end: pass\n"
    )
    process = subprocess.Popen([sys.executable, "-c", burn], start_new_session=True)
    try:
        time.sleep(1.0)
        first = paired.session_cpu_ticks(process.pid)
        time.sleep(1.0)
        second = paired.session_cpu_ticks(process.pid)
    finally:
        subprocess.run(["pkill", "-s", str(process.pid)], check=False)
        process.wait()
    assert second > first > 0
    deadline = time.monotonic() + 10  # the killed child may outlive its parent by a moment
    while paired.session_cpu_ticks(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert paired.session_cpu_ticks(process.pid) == 0  # nothing left in that session


def test_targets_use_the_paired_figure_when_there_is_one():
    raw = {
        "paired": {"sklearn-w1": paired.summarize_cycles("identity-w1", [_cycle(95, 100, 1, 1)])},
    }
    (target,) = [t for t in report.targets(raw, {}) if t["issue"] == 2]
    assert "paired cycles" in target["what"]
    assert target["measured"] == 0.95
    assert target["met"] is True


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_a_real_pair_is_measured_and_reported(tmp_path):
    done = run_bench(
        tmp_path,
        BENCH_SYSTEMS="identity-w1,sklearn-w1",
        BENCH_PARTS="paired",
        BENCH_PAIRED_CYCLES="2",
        BENCH_PAIRED_SECONDS="1",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    raw = json.loads((tmp_path / "results" / "latest.json").read_text())
    pair = raw["paired"]["sklearn-w1"]
    assert pair["ceiling"] == "identity-w1"
    assert len(pair["cycles"]) == 2
    for cycle in pair["cycles"]:
        for side in ("ours", "ceiling"):
            assert cycle[side]["requests_per_s"] > 0
            assert cycle[side]["cpu_us_per_request"] > 0
            assert cycle[side]["errors"] == 0
    text = (tmp_path / "results" / "latest.md").read_text()
    assert "## Paired ceiling, single row" in text
    assert "`sklearn-w1` | `identity-w1`" in text
