"""Served one-hot pipeline, fast path on vs off in one run: two ``modelshelf serve`` processes
of this checkout on the same model (``MODELSHELF_FAST_PATH`` unset / ``false``), rounds of N
sequential requests on one keep-alive connection, alternating which goes first; server CPU =
utime + stime of the server's process tree over the round, ÷ N. Prints medians and ratios for
1 and 100 rows, Seldon ``names`` + rows and V2 ``content_type: pd``.

    .venv/bin/python bench/profiles/pipeline_served.py MODEL_FOLDER [--requests 500] [--rounds 5]

MODEL_FOLDER holds the realistic bench's ``onehot_pipeline`` (``bench.realistic.make_models``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.profiles.served_cpu import post, start, tree_cpu, wait_ready  # noqa: E402
from bench.realistic import PIPELINE_NAMES, _pipeline_rows  # noqa: E402


def bodies(model: Path, rows: int) -> dict[str, tuple[str, bytes]]:
    made = _pipeline_rows(rows)
    seldon = {"data": {"names": PIPELINE_NAMES, "ndarray": made}}
    columns = list(zip(*made, strict=True))
    kinds = ("BYTES", "BYTES", "INT64", "FP64")
    v2 = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": name, "shape": [rows], "datatype": kind, "data": list(values)}
            for name, kind, values in zip(PIPELINE_NAMES, kinds, columns, strict=True)
        ],
    }
    return {
        f"seldon {rows}": ("/api/v1.0/predictions", json.dumps(seldon).encode()),
        f"v2 pd {rows}": (f"/v2/models/{model.name}/infer", json.dumps(v2).encode()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=18910)
    parser.add_argument("--logs", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    model = args.model.resolve()
    payloads = {**bodies(model, 1), **bodies(model, 100)}
    ports = {"on": args.port, "off": args.port + 10}
    servers: dict[str, object] = {}
    saved = os.environ.get("MODELSHELF_FAST_PATH")
    try:
        for side, port in ports.items():
            os.environ["MODELSHELF_FAST_PATH"] = "true" if side == "on" else "false"
            log = args.logs / f"pipeline_served-{side}.log"
            servers[side] = start(REPO, "SKLearnServer", model, 1, port, log)
        for port in ports.values():
            wait_ready(port, *payloads["seldon 1"])
        cpu = {(s, k): [] for s in ports for k in payloads}
        wall = {(s, k): [] for s in ports for k in payloads}
        for round_ in range(args.rounds):
            for kind, (path, body) in payloads.items():
                order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                for side in order:
                    connection = http.client.HTTPConnection("127.0.0.1", ports[side])
                    for _ in range(20):
                        assert post(connection, path, body) == 200, (side, kind)
                    pid = servers[side].pid  # type: ignore[attr-defined]
                    used, started = tree_cpu(pid), time.perf_counter()
                    answered = [post(connection, path, body) for _ in range(args.requests)]
                    if answered.count(200) != len(answered):
                        raise SystemExit(f"{side} ({kind}): statuses {sorted(set(answered))}")
                    wall[side, kind].append((time.perf_counter() - started) / args.requests)
                    cpu[side, kind].append((tree_cpu(pid) - used) / args.requests)
                    connection.close()
        print(f"{model.name}, 1 worker, {args.rounds} rounds x {args.requests} requests, median")
        for kind in payloads:
            on, off = (statistics.median(cpu[s, kind]) * 1e6 for s in ("on", "off"))
            won, woff = (statistics.median(wall[s, kind]) * 1e6 for s in ("on", "off"))
            print(f"  {kind}: server CPU/request off {off:.0f} µs, on {on:.0f} µs "
                  f"({off / on:.2f}x); req/s off {1e6 / woff:.0f}, on {1e6 / won:.0f} "
                  f"({woff / won:.2f}x)")  # fmt: skip
    finally:
        if saved is None:
            os.environ.pop("MODELSHELF_FAST_PATH", None)
        else:
            os.environ["MODELSHELF_FAST_PATH"] = saved
        for process in servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # type: ignore[attr-defined]
            process.wait(15)  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
