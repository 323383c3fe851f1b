"""``python -m bench``: install the peers, make the models, measure everything, write the report.

REST systems are measured in rounds; every round starts each system afresh (its cold start is one
sample), warms it up, reads its memory, then loads it with wrk, single-row and batch, and stops
it, so only one server runs at a time. The order rotates between rounds (A B C, B C A, …) and
ratios are taken between systems of the same round, which is what stays meaningful on a shared,
noisy machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx

from bench import grpc_load, images, load, paired, peers, procs, report, storage
from bench.config import REPO, VENV_BIN, Config
from bench.models import SINGLE_ROW, Models, make_models
from bench.systems import PEERS_DIR, Ports, System, all_systems, answer_check

OUR_PACKAGES = (
    "modelshelf", "seldon-core", "scikit-learn", "xgboost-cpu", "mlflow", "numpy", "flask",
    "gunicorn", "starlette", "uvicorn", "orjson", "boto3",
)  # fmt: skip


# What our servers and tools import, imported once before anything is timed: a venv that uv made
# has no bytecode yet, and round 1's cold starts must not pay for compiling it.
OUR_WARM_IMPORTS = (
    "seldon_core.microservice", "seldon_core.wrapper", "gunicorn.app.base", "flask",
    "modelshelf.cli", "modelshelf.serve.rest", "modelshelf.serve.supervisor",
    "modelshelf.frameworks.sklearn", "modelshelf.frameworks.xgboost",
    "modelshelf.frameworks.mlflow", "modelshelf.environment", "modelshelf.storage",
    "mlflow.pyfunc", "mlflow.sklearn", "sklearn.linear_model", "xgboost", "uvicorn", "grpc",
    "prometheus_client", "boto3", "moto.server",
)  # fmt: skip


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Phases:
    """Wall-clock seconds of each phase of the run, logged as each ends and kept for the report
    (what a fresh machine spends where: installs, models, REST, storage, images)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 1)
            say(f"phase {name}: {self.seconds[name]:.0f} s")


def machine() -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def our_versions() -> dict[str, str]:
    found = {}
    for name in OUR_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    wrk = subprocess.run([load.wrk_path(), "--version"], capture_output=True, text=True)
    first = (wrk.stdout or wrk.stderr or "?").splitlines()[0]
    found["wrk"] = first.split(" Copyright")[0].removeprefix("wrk ")
    if h2load := grpc_load.h2load_path():  # the gRPC rows' load generator
        done = subprocess.run([h2load, "--version"], capture_output=True, text=True)
        found["h2load"] = done.stdout.strip().removeprefix("h2load ")
    return found


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def grpc_load_command(cfg: Config) -> str:
    """How the gRPC rows are loaded: h2load's command line, or the Python fallback's."""
    if grpc_load.h2load_path() is None:
        return f"python -m bench.grpc_load ADDRESS REQUEST {cfg.duration} {cfg.connections} METHOD"
    command = grpc_load.h2load_command(
        "ADDRESS", Path("REQUEST.grpc"), cfg.duration, cfg.connections, "/METHOD", Path("LOG")
    )
    return " ".join(f"'{part}'" if " " in part else part for part in command)


# ----------------------------------------------------------------------------- REST


def measure_once(system: System, models: Models, cfg: Config, scripts: dict) -> dict:
    """Start ``system``, time its first prediction, warm it, read its memory, load it, stop it."""
    if system.transport == "grpc":
        return grpc_load.measure_once(system, models, cfg)
    ports = Ports(procs.free_port(), procs.free_port(), procs.free_port())
    url = f"http://127.0.0.1:{ports.http}{system.path}"
    command = system.command(ports, models, cfg.work)
    single = models.payload(system.payload, 1)
    batch = models.payload(system.payload, cfg.batch_rows)
    server = procs.start(
        command, system.cwd, system.process_env(), cfg.work / "logs" / f"{system.name}.log"
    )
    try:
        cold, _ = procs.first_prediction(
            server, url, single.read_bytes(), answer_check(system.payload, len(SINGLE_ROW))
        )
        load.warm_up(url, single.read_bytes())
        load.warm_up(url, batch.read_bytes(), 10)
        with httpx.Client(timeout=30) as client:
            content = batch.read_bytes()
            answer = client.post(url, content=content, headers=load.request_headers(content))
        problem = answer_check(system.payload, cfg.batch_rows)(load.read_answer(answer))
        if answer.status_code != 200 or problem:
            raise RuntimeError(f"batch answer wrong: HTTP {answer.status_code} {problem}")
        memory = procs.tree_memory(server.process.pid)
        results = {"cold_start_s": round(cold, 3), "memory": memory}
        for key, body, rows in (("single", single, 1), ("batch", batch, cfg.batch_rows)):
            outcome = load.run_wrk(url, scripts[body], cfg.duration, cfg.connections, rows)
            results[key] = outcome.to_dict()
        results["command"] = command
        return results
    finally:
        procs.stop(server, timeout=1)


def measure_rest(systems: list[System], models: Models, cfg: Config) -> dict[str, list[dict]]:
    scripts = {}
    for path in sorted(models.payloads.glob("*.json")):
        scripts[path] = load.write_script(path, cfg.work / "lua")
    runs: dict[str, list[dict]] = {s.name: [] for s in systems}
    for round_index in range(cfg.rounds):
        shift = round_index % len(systems)
        order = systems[shift:] + systems[:shift]
        for system in order:
            started = time.monotonic()
            try:
                result = measure_once(system, models, cfg, scripts)
            except Exception as exc:  # one broken system must not stop the others
                text = f"{type(exc).__name__}: {exc}"
                # What went wrong comes first, then the end of the server's log.
                result = {"error": text if len(text) <= 2000 else f"{text[:400]} … {text[-1600:]}"}
                say(f"round {round_index + 1}: {system.name} FAILED: {result['error'][:300]}")
            else:
                say(
                    f"round {round_index + 1}: {system.name}: cold {result['cold_start_s']} s, "
                    f"single {result['single']['requests_per_s']} req/s, "
                    f"batch {result['batch']['requests_per_s']} req/s "
                    f"({time.monotonic() - started:.0f} s)"
                )
            result["round"] = round_index + 1
            runs[system.name].append(result)
    return runs


# ----------------------------------------------------------------------------- main


def main() -> int:
    cfg = Config.from_env()
    started = time.monotonic()
    phases = Phases()
    cfg.work.mkdir(parents=True, exist_ok=True)
    cfg.results.mkdir(parents=True, exist_ok=True)
    load.wrk_path()
    raw: dict = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine(),
        "settings": {
            "duration_s": cfg.duration,
            "rounds": cfg.rounds,
            "paired_cycles": cfg.paired_cycles,
            "paired_seconds": cfg.paired_seconds,
            "storage_rounds": cfg.storage_rounds,
            "connections": cfg.connections,
            "batch_rows": cfg.batch_rows,
            "systems": cfg.systems,
            "parts": cfg.parts,
            "wrk": " ".join(
                load.wrk_command("URL", Path("PAYLOAD.lua"), cfg.duration, cfg.connections)
            ),
            "grpc_load": grpc_load_command(cfg),
        },
        "versions": {"ours": our_versions()},
    }
    selected = [s for s in all_systems() if cfg.selects(s.name)]
    unavailable: dict[str, str] = {}
    wanted_envs = {s.peer_env for s in selected if s.peer_env and "rest" in cfg.parts}
    if "storage" in cfg.parts:
        wanted_envs.add("awscli")
    if "realistic" in cfg.parts:
        wanted_envs |= {"mlserver", "kserve", "mlflow"}
    envs = tuple(e for e in peers.peer_envs() if e.name in wanted_envs)
    statuses: dict[str, peers.PeerStatus] = {}

    # The peers install (network and disk) while the models train (CPU); nothing is timed yet.
    with ThreadPoolExecutor(2) as background:
        warming = background.submit(_warm_ours, phases)
        installing = None
        if cfg.peers and envs:
            uv = peers.uv_path()
            say(
                f"peer venvs under {PEERS_DIR} with {'uv' if uv else 'pip (no uv found)'}: "
                f"{', '.join(e.name for e in envs)} (reused when unchanged)"
            )
            installing = background.submit(_install_peers, envs, uv, phases)
        with phases("models"):
            say("training the models and writing the payloads")
            families = {s.family for s in selected if s.family != "identity"} | (
                {"sklearn", "xgboost", "mlflow"} if "inprocess" in cfg.parts else set()
            )
            models = make_models(cfg.work / "models", cfg.batch_rows, frozenset(families))
        if installing is not None:
            statuses = installing.result()
        warming.result()
    raw["peer_envs"] = {
        name: {
            "ok": s.ok, "cached": s.cached, "install_seconds": round(s.seconds, 1),
            "installer": s.installer, "versions": s.versions, "error": s.error[-1500:],
            "requirements": [list(step) for step in next(e for e in envs if e.name == name).steps],
            "note": next(e for e in envs if e.name == name).note,
        }
        for name, s in statuses.items()
    }  # fmt: skip

    runnable = []
    for system in selected:
        reason = system.available()
        if not reason and system.peer_env:
            status = statuses.get(system.peer_env)
            if not cfg.peers:
                reason = "BENCH_PEERS=0"
            elif status is None or not status.ok:
                reason = f"its venv ({system.peer_env}) did not install"
        if reason:
            unavailable[system.name] = reason
        else:
            runnable.append(system)

    if "inprocess" in cfg.parts:
        with phases("inprocess"):
            say("in-process predict cost")
            raw["inprocess"] = _inprocess(models, cfg)

    if "rest" in cfg.parts and runnable:
        with phases("rest"):
            say(
                f"REST: {len(runnable)} systems x {cfg.rounds} rounds, "
                f"wrk {cfg.duration} s per load"
            )
            raw["rest"] = {
                "systems": {
                    s.name: {
                        "label": s.label, "family": s.family, "role": s.role,
                        "workers": s.workers, "payload": s.payload, "path": s.path,
                        "reference": s.reference, "env": s.env, "cwd": _shown(s.cwd),
                        "transport": s.transport,
                    }
                    for s in runnable
                },
                "runs": measure_rest(runnable, models, cfg),
            }  # fmt: skip
    raw["unavailable"] = unavailable

    if "paired" in cfg.parts and runnable:
        with phases("paired"):
            say(
                f"paired ceiling: {cfg.paired_cycles} cycles of {cfg.paired_seconds} s per side, "
                "ours and the identity model up at once"
            )
            raw["paired"] = paired.measure_pairs({s.name: s for s in runnable}, models, cfg, say)

    if "realistic" in cfg.parts:
        with phases("realistic"):
            say("realistic model set, batching on and off, beside the peers (realistic.md)")
            from bench import realistic

            seconds = int(os.environ.get("BENCH_REALISTIC_SECONDS", cfg.duration))
            raw["realistic"] = realistic.run(cfg.work / "realistic", cfg.results, seconds, say)

    if "storage" in cfg.parts:
        reason = _fetch_missing()
        if reason:
            raw["storage"] = {"unavailable": reason}
        else:
            with phases("storage"):
                say(
                    f"storage: modelshelf fetch vs aws s3 sync, {cfg.s3_big_mb} MB object and "
                    f"{cfg.s3_small_files:,} small files, {cfg.storage_rounds} rounds"
                )
                aws = statuses.get("awscli")
                aws_bin = PEERS_DIR / "awscli" / "bin" if aws and aws.ok else None
                try:
                    raw["storage"] = storage.measure(
                        cfg.work / "storage",
                        aws_bin,
                        cfg.s3_big_mb,
                        cfg.s3_small_files,
                        cfg.storage_rounds,
                    )
                except Exception as exc:  # reported, not fatal: REST figures still stand
                    raw["storage"] = {"error": f"{type(exc).__name__}: {exc}"}
                finally:
                    shutil.rmtree(cfg.work / "storage", ignore_errors=True)
            if aws_bin is None:
                raw["storage"]["aws_unavailable"] = (
                    "BENCH_PEERS=0" if not cfg.peers else "its venv (awscli) did not install"
                )

    if "images" in cfg.parts:
        with phases("images"):
            raw["images"] = images.measure()

    raw["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    raw["seconds"] = round(time.monotonic() - started, 1)
    raw["phases"] = phases.seconds
    profile = REPO / "bench" / "profiles" / "serve.md"  # written by hand with py-spy, not by us
    if profile.exists():
        raw["profile"] = os.path.relpath(profile, cfg.results)
    summary = report.summarize(raw)
    raw["summary"] = summary
    (cfg.results / "latest.json").write_text(json.dumps(raw, indent=1) + "\n")
    text = report.render(raw)
    (cfg.results / "latest.md").write_text(text)
    print(text)
    say(
        f"done in {raw['seconds']:.0f} s ("
        + ", ".join(f"{name} {sec:.0f} s" for name, sec in phases.seconds.items())
        + f"): {cfg.results / 'latest.md'}"
    )
    return 0


def _warm_ours(phases: Phases) -> None:
    with phases("warm_imports"):
        peers.warm_imports(sys.executable, OUR_WARM_IMPORTS)


def _install_peers(
    envs: tuple[peers.PeerEnv, ...], uv: str | None, phases: Phases
) -> dict[str, peers.PeerStatus]:
    with phases("peer_venvs"):
        statuses = peers.ensure_all(envs, PEERS_DIR, uv)
    for status in statuses.values():
        if not status.ok:
            say(f"  {status.name}: FAILED: {status.error[-300:]}")
        elif status.cached:
            say(f"  {status.name}: cached")
        else:
            say(f"  {status.name}: installed by {status.installer} in {status.seconds:.0f} s")
    return statuses


def _inprocess(models: Models, cfg: Config) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", str(models.sklearn.parent), str(cfg.batch_rows)],
        cwd=cfg.work,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "MLFLOW_TRACKING_URI": (cfg.work / "mlruns").as_uri(),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _fetch_missing() -> str | None:
    done = subprocess.run(
        [str(VENV_BIN / "modelshelf"), "fetch", "--help"], capture_output=True, text=True
    )
    return None if done.returncode == 0 else "`modelshelf fetch` does not exist yet"
