"""Our servers against the identity ceiling, measured in pairs: both up at once, loaded in turn.

Why: on a shared machine the host's speed drifts by a third over minutes (identity-w1 read 564,
720, 1,041 and 1,038 req/s in four rounds of one run), so a ratio of two systems measured minutes
apart is mostly that drift. Here each cycle loads ours and the ceiling seconds apart (the order
alternates), and the figure is the median over cycles of the ratio within a cycle. The servers'
CPU time per request (every process of each: gunicorn master and workers, seldon-core's metrics
process) is read from /proc beside it: steadier still, since time the host takes away is not
charged to them.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path

from bench import load, procs
from bench.config import Config
from bench.models import SINGLE_ROW, Models
from bench.systems import Ports, System, answer_check

#: (ours, the ceiling it is compared with), in the order they are measured.
PAIRS = (
    ("sklearn-w1", "identity-w1"),
    ("xgboost-w1", "identity-w1"),
    ("mlflow-w1", "identity-w1"),
    ("sklearn-w2", "identity-w2"),
)
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def measure_pairs(
    systems: dict[str, System], models: Models, cfg: Config, say: Callable[[str], None]
) -> dict[str, dict]:
    """For each pair whose two systems both run here: cycles of (ours, ceiling) figures and the
    medians of their ratios."""
    found: dict[str, dict] = {}
    for ours, ceiling in PAIRS:
        if ours not in systems or ceiling not in systems:
            continue
        try:
            cycles = _cycles(systems[ours], systems[ceiling], models, cfg, say)
        except Exception as exc:  # one broken pair must not stop the others
            found[ours] = {"ceiling": ceiling, "error": f"{type(exc).__name__}: {exc}"[:2000]}
            say(f"paired: {ours} vs {ceiling} FAILED: {found[ours]['error'][:300]}")
            continue
        found[ours] = summarize_cycles(ceiling, cycles)
        say(
            f"paired: {ours} ÷ {ceiling} = {found[ours]['ratio']} req/s, "
            f"{found[ours]['cpu_ratio']} CPU/request, {len(cycles)} cycles"
        )
    return found


def summarize_cycles(ceiling: str, cycles: list[dict]) -> dict:
    """Medians (and quartiles) over cycles of ours ÷ ceiling in requests/s, and of the ceiling's
    CPU per request ÷ ours (so that above 1 means ours is cheaper, as for requests/s)."""
    rates = [c["ours"]["requests_per_s"] / c["ceiling"]["requests_per_s"] for c in cycles]
    cpu = [c["ceiling"]["cpu_us_per_request"] / c["ours"]["cpu_us_per_request"] for c in cycles]
    q1, _, q3 = statistics.quantiles(rates, n=4) if len(rates) > 1 else (rates[0],) * 3
    return {
        "ceiling": ceiling,
        "ratio": round(statistics.median(rates), 3),
        "ratio_q1": round(q1, 3),
        "ratio_q3": round(q3, 3),
        "cpu_ratio": round(statistics.median(cpu), 3),
        "cycles": cycles,
    }


def _cycles(
    ours: System, ceiling: System, models: Models, cfg: Config, say: Callable[[str], None]
) -> list[dict]:
    body = models.payload(ours.payload, 1)
    script = load.write_script(body, cfg.work / "lua")
    started = {}
    try:
        for system in (ours, ceiling):
            ports = Ports(procs.free_port(), procs.free_port(), procs.free_port())
            server = procs.start(
                system.command(ports, models, cfg.work),
                system.cwd,
                system.process_env(),
                cfg.work / "logs" / f"paired-{system.name}.log",
            )
            started[system.name] = (server, f"http://127.0.0.1:{ports.http}{system.path}")
            say(f"paired: starting {system.name} on port {ports.http}")
            check = answer_check(system.payload, len(SINGLE_ROW))
            procs.first_prediction(server, started[system.name][1], body.read_bytes(), check)
            load.warm_up(started[system.name][1], body.read_bytes(), 100)
        cycles = []
        for index in range(cfg.paired_cycles):
            say(f"paired: {ours.name} vs {ceiling.name}, cycle {index + 1}")
            order = (ours, ceiling) if index % 2 == 0 else (ceiling, ours)
            cycle = {}
            for system in order:
                server, url = started[system.name]
                before = session_cpu_ticks(server.process.pid)
                outcome = load.run_wrk(url, script, cfg.paired_seconds, cfg.connections, 1)
                ticks = session_cpu_ticks(server.process.pid) - before
                role = "ours" if system is ours else "ceiling"
                cycle[role] = {
                    "requests_per_s": round(outcome.requests_per_s, 1),
                    "cpu_us_per_request": round(
                        ticks / _TICKS_PER_S * 1e6 / max(outcome.requests, 1), 1
                    ),
                    "errors": outcome.errors,
                }
            cycles.append(cycle)
        return cycles
    finally:
        for server, _ in started.values():
            procs.stop(server, timeout=1)


def session_cpu_ticks(session: int) -> int:
    """User + system clock ticks of every live process in ``session`` (a server started in a
    session of its own: its master, workers and seldon-core's metrics process)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session:  # after ")": state, ppid, pgrp, session, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total
