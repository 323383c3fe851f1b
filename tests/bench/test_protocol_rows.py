"""The bench's REST protocol rows (issue 16) end to end: V2 JSON and binary on `modelshelf
serve`, loaded by wrk, checked, and compared with our Seldon path in the targets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from bench.load import read_answer, request_headers
from bench.models import body_bytes

from benchrun import run_bench

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.8, 1.8]]


def test_binary_bodies_carry_their_json_length():
    plain = body_bytes("v2-proba", ROWS)
    assert request_headers(plain) == {"Content-Type": "application/json"}
    binary = body_bytes("v2-binary-proba", ROWS)
    size = int(request_headers(binary)["Inference-Header-Content-Length"])
    header = json.loads(binary[:size])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == len(binary) - size == 64


def test_binary_answers_are_read_by_their_json_part():
    document = json.dumps({"outputs": [{"name": "p", "shape": [2, 3]}]}).encode()
    answer = httpx.Response(
        200,
        content=document + b"\x00" * 48,
        headers={"inference-header-content-length": str(len(document))},
    )
    assert read_answer(answer)["outputs"][0]["shape"] == [2, 3]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make bench does)")
def test_v2_rows_are_measured_and_compared_with_our_seldon_path(tmp_path: Path):
    systems = "serve-sklearn-w1,serve-sklearn-v2-w1,serve-sklearn-v2bin-w1"
    done = run_bench(tmp_path, BENCH_SYSTEMS=systems, BENCH_PARTS="rest")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    raw = json.loads((tmp_path / "results" / "latest.json").read_text())
    for name in systems.split(","):
        (run,) = raw["rest"]["runs"][name]
        assert "error" not in run, run.get("error")
        for load in ("single", "batch"):
            assert run[load]["requests"] > 0 and run[load]["errors"] == 0, run[load]
    targets = {t["what"]: t for t in raw["summary"]["targets"] if t["issue"] == 16}
    measured = [t for t in targets.values() if "`serve-sklearn-w1`" in t["what"]]
    assert len(measured) == 4 and all(t["measured"] for t in measured), measured
