"""Medians, same-round ratios, the issues' targets, and the Markdown report, all computed from
the raw figures of this run (nothing is carried over from an earlier one)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

LOADS = ("single", "batch")
LOAD_NAMES = {"single": "single row", "batch": "batch"}
XGB_DMATRIX = "xgboost Booster.predict(DMatrix(X)) (a DMatrix per request)"
XGB_OURS = "ours: XGBoostServer.predict"


def _median(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _by_round(runs: list[dict]) -> dict[int, dict]:
    return {run["round"]: run for run in runs if "error" not in run}


def same_round_ratio(rest: dict, name: str, other: str, load: str, key: str = "requests_per_s"):
    """Median over rounds of ``name``'s figure divided by ``other``'s in the same round."""
    mine = _by_round(rest["runs"].get(name, []))
    theirs = _by_round(rest["runs"].get(other, []))
    ratios = [
        mine[r][load][key] / theirs[r][load][key]
        for r in mine
        if r in theirs and theirs[r][load][key]
    ]
    return round(statistics.median(ratios), 2) if ratios else None


def same_round_difference(rest: dict, name: str, other: str, key: str = "cold_start_s"):
    """Median over rounds of ``name``'s figure minus ``other``'s in the same round."""
    mine = _by_round(rest["runs"].get(name, []))
    theirs = _by_round(rest["runs"].get(other, []))
    differences = [mine[r][key] - theirs[r][key] for r in mine if r in theirs]
    return round(statistics.median(differences), 2) if differences else None


def summarize(raw: dict) -> dict:
    rest = raw.get("rest")
    systems: dict[str, dict] = {}
    if rest:
        for name, runs in rest["runs"].items():
            meta = rest["systems"][name]
            ok = [r for r in runs if "error" not in r]
            entry: dict[str, Any] = {
                "runs_ok": len(ok),
                "runs_failed": len(runs) - len(ok),
                "first_error": next((r["error"] for r in runs if "error" in r), None),
                "cold_start_s": _median(r["cold_start_s"] for r in ok),
                "cold_start_runs": [r["cold_start_s"] for r in ok],
                "rss_mb": _median(r["memory"]["rss_mb"] for r in ok),
                "pss_mb": _median(r["memory"]["pss_mb"] for r in ok),
                "processes": _median(r["memory"]["processes"] for r in ok),
            }
            ceiling = f"identity-w{meta['workers']}"
            for load in LOADS:
                entry[load] = {
                    "requests_per_s": _median(r[load]["requests_per_s"] for r in ok),
                    "runs": [r[load]["requests_per_s"] for r in ok],
                    "rows_per_s": _median(r[load]["rows_per_s"] for r in ok),
                    "p50_ms": _median(r[load]["p50_ms"] for r in ok),
                    "p99_ms": _median(r[load]["p99_ms"] for r in ok),
                    "errors": sum(r[load]["errors"] for r in ok),
                    "vs_ours": same_round_ratio(rest, name, meta["reference"], load)
                    if meta["reference"] != name
                    else (1.0 if ok else None),
                    "vs_ceiling": same_round_ratio(rest, name, ceiling, load),
                }
            systems[name] = entry
    return {"systems": systems, "targets": targets(raw, systems)}


def _best_peer(raw: dict, systems: dict, family: str, workers: int, load: str) -> str | None:
    """The fastest peer over HTTP (issue 10 compares our REST path; gRPC rows have their own)."""
    meta = raw["rest"]["systems"]
    peers = [
        n
        for n, m in meta.items()
        if m["role"] == "peer"
        and m.get("transport", "http") == "http"
        and m["family"] == family
        and m["workers"] == workers
        and systems[n][load]["requests_per_s"]
    ]
    return max(peers, key=lambda n: systems[n][load]["requests_per_s"], default=None)


def targets(raw: dict, systems: dict) -> list[dict]:
    """Each issue's speed target, as measured in this run (None: could not be measured)."""
    found: list[dict] = []

    def add(issue: int, what: str, measured: float | None, op: str, goal: float) -> None:
        met = None if measured is None else (measured >= goal if op == "≥" else measured <= goal)
        found.append(
            {"issue": issue, "what": what, "measured": measured, "target": f"{op} {goal:g}",
             "met": met}
        )  # fmt: skip

    rest = raw.get("rest")

    def ratio(name: str, other: str | None, load: str = "single") -> float | None:
        return same_round_ratio(rest, name, other, load) if rest and other else None

    def quotient(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    workers = sorted({m["workers"] for m in rest["systems"].values()}) if rest else [1]
    workers = sorted({*workers, *(int(n.rsplit("-w", 1)[1]) for n in raw.get("paired") or {})})
    for w in workers:
        for issue, family, cls, goal in (
            (2, "sklearn", "SKLearnServer", 0.9),
            (4, "xgboost", "XGBoostServer", 0.9),
            (5, "mlflow", "MLFlowServer", 0.8),
        ):
            pair = (raw.get("paired") or {}).get(f"{family}-w{w}", {})
            if "ratio" in pair:  # paired cycles: the host's drift cancels out (see bench/paired)
                what = f"{cls} ÷ identity ceiling, single row, {w} worker(s), paired cycles"
                add(issue, what, round(pair["ratio"], 2), "≥", goal)
            else:
                what = f"{cls} ÷ identity ceiling, single row, {w} worker(s)"
                add(issue, what, ratio(f"{family}-w{w}", f"identity-w{w}"), "≥", goal)

    mlflow = "mlflow-env-w1" if systems.get("mlflow-env-w1", {}).get("runs_ok") else "mlflow-w1"
    cold = [systems.get(n, {}).get("cold_start_s") for n in (mlflow, "sklearn-w1")]
    add(5, f"MLFlowServer cold start ({mlflow}) ÷ SKLearnServer cold start (medians, 1 worker)",
        quotient(*cold), "≤", 1.5)  # fmt: skip
    extra = same_round_difference(rest, "mlflow-env-extra-w1", "mlflow-env-w1") if rest else None
    add(5, "MLFlowServer cold start with one package to install from the wheels folder, minus "
        "without, same round (s)", extra, "≤", 5)  # fmt: skip

    inproc = raw.get("inprocess") or {}
    dmatrix = inproc.get(XGB_DMATRIX, {}).get("1_rows_us")
    ours_xgb = inproc.get(XGB_OURS, {}).get("1_rows_us")
    add(4, "in-process single row: DMatrix-per-request time ÷ XGBoostServer.predict time",
        quotient(dmatrix, ours_xgb), "≥", 2)  # fmt: skip

    if rest:
        serve = "serve-sklearn-w1"
        for load, goal in (("single", 3.0), ("batch", 2.0)):
            best = _best_peer(raw, systems, "sklearn", 1, load)
            what = (
                f"`modelshelf serve` SKLearnServer ÷ best sklearn peer ({best}), {load}, 1 worker"
            )
            add(10, what, ratio(serve, best, load), "≥", goal)
        what = (
            "`modelshelf serve` SKLearnServer ÷ SKLearnServer on seldon-core-microservice, single"
        )
        add(10, what + " row, 1 worker", ratio(serve, "sklearn-w1"), "≥", 3)
        best = _best_peer(raw, systems, "sklearn", 1, "single")
        mine = systems.get(serve, {}).get("single", {}).get("p99_ms")
        theirs = systems[best]["single"]["p99_ms"] if best else None
        what = f"`modelshelf serve` p99 ÷ best sklearn peer's p99 ({best}), single row, 1 worker"
        add(10, what, quotient(mine, theirs), "≤", 1)

    if rest:
        from bench.protocol_systems import protocol_targets

        protocol_targets(add, ratio)

    store = (raw.get("storage") or {}).get("results") or {}
    for name, what in (("big", "one big object"), ("small", "many small files")):
        measured = (store.get(name) or {}).get("ratio")
        add(3, f"`modelshelf fetch` ÷ `aws s3 sync` throughput, {what}", measured, "≥", 1)
    return found


# ----------------------------------------------------------------------------- Markdown


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}×"  # noqa: RUF001 - a ratio


def render(raw: dict) -> str:
    summary = raw["summary"]
    settings = raw["settings"]
    m = raw["machine"]
    lines = [
        "# modelshelf benchmark: ours beside the peers",
        "",
        f"Run {raw['started']} on commit `{raw['git']}`, {raw['seconds']:.0f} s. Written by "
        "`make bench` (`python -m bench`); every figure below was measured in this run. Raw "
        "figures, versions and commands: [`latest.json`](latest.json).",
        "",
        f"Machine: {m['cores']} cores ({m['cpu'] or 'unknown CPU'}), {m['memory_gb']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}. Load average at start "
        f"{m['load_average_at_start']}, at end {m['load_average_at_end']}. **wrk runs on the "
        "same cores as the server**, and on a shared machine other work competes too: read "
        "absolute numbers as orders of magnitude, and the same-round ratios as the comparison.",
        "",
        f"Method: {settings['rounds']} rounds; in each round every system is started afresh "
        "(cold start = process start to the first correct prediction), warmed up, its memory read "
        f"(whole process tree), then loaded by `{settings['wrk']}` with a single-row body and "
        f"with a {settings['batch_rows']:,}-row body, and stopped. The order rotates each round. "
        "Cells are medians over rounds; *÷ ours* divides by our server for the same model and "
        "worker count **in the same round** (then the median), *÷ ceiling* by the identity model "
        "on seldon-core-microservice with as many workers.",
        "",
    ]
    lines += _grpc_method(raw)
    lines += _phases(raw)
    if raw.get("profile"):
        lines += [
            f"Where one request's time goes in `modelshelf serve`: [per-request profile]"
            f"({raw['profile']}).",
            "",
        ]
    lines += _where_we_stand(raw, summary)
    lines += _rest_tables(raw, summary)
    lines += _paired(raw)
    lines += _targets(summary)
    lines += _inprocess(raw)
    lines += _storage(raw)
    lines += _images(raw)
    lines += _not_measurable(raw, summary)
    lines += _versions(raw)
    return "\n".join(lines) + "\n"


def _grpc_method(raw: dict) -> list[str]:
    """How the gRPC rows were loaded and checked (``bench.grpc_load``), when there are some."""
    runs = (raw.get("rest") or {}).get("runs") or {}
    clients = sorted({r["load_client"] for rs in runs.values() for r in rs if "load_client" in r})
    if not clients:
        return []
    if clients == ["h2load"]:
        how = (
            f"`{raw['settings']['grpc_load']}` (a C client, as wrk is for REST: the same "
            "connections, one call in flight on each)"
        )
    else:
        how = " or ".join(f"`{c}`" for c in clients) + " (per run: its `load_client`)"
    counted = (
        "h2load counts HTTP statuses and cannot read `grpc-status` in the trailers, so a call "
        "counts only if the body bytes received add up to a full answer, and a"
        if "h2load" in clients
        else "A"
    )
    return [
        f"The gRPC rows (V2 and the Seldon protocol over gRPC) are loaded by {how}. {counted} "
        "real gRPC client checks the answer (its rows) before and after each load.",
        "",
    ]


def _where_we_stand(raw: dict, summary: dict) -> list[str]:
    rest = raw.get("rest")
    systems = summary["systems"]
    if not rest or "sklearn-w1" not in systems:
        return []
    ours = systems["sklearn-w1"]["single"]
    pair = (raw.get("paired") or {}).get("sklearn-w1", {})
    ceiling = (
        f"{_ratio(pair['ratio'])} the framework's ceiling (paired cycles)"
        if "ratio" in pair
        else f"{_ratio(ours['vs_ceiling'])} the framework's ceiling"
    )
    text = (
        f"**Where we stand** (single row, 1 worker): our SKLearnServer on seldon-core-microservice "
        f"{_num(ours['requests_per_s'])} req/s, {ceiling}"
    )
    best = _best_peer(raw, systems, "sklearn", 1, "single")
    if best:
        text += (
            f"; the best scikit-learn peer, {rest['systems'][best]['label']}, "
            f"{_num(systems[best]['single']['requests_per_s'])} req/s "
            f"({_ratio(systems[best]['single']['vs_ours'])} ours)"
        )
    serve = systems.get("serve-sklearn-w1")
    if serve and serve["single"]["requests_per_s"]:
        text += (
            f"; with `modelshelf serve`, {_num(serve['single']['requests_per_s'])} req/s "
            f"({_ratio(serve['single']['vs_ours'])} ours on seldon-core-microservice)"
        )
    return [text + ".", ""]


def _paired(raw: dict) -> list[str]:
    found = raw.get("paired")
    if not found:
        return []
    settings = raw["settings"]
    lines = [
        "## Paired ceiling, single row",
        "",
        f"Ours and the identity model up at once; {settings['paired_cycles']} cycles, each loading "
        f"both in turn for {settings['paired_seconds']} s (order alternating), same wrk settings. "
        "*÷ ceiling* is the median over cycles of the ratio within a cycle (quartiles beside it); "
        "*CPU* is the ceiling's CPU time per request (all of a server's processes) ÷ ours, so "
        "above 1 means ours costs less. The issues' ceiling targets use these figures.",
        "",
        "| ours | ceiling | ÷ ceiling (req/s) | quartiles | CPU ÷ | cycles: ours/ceiling req/s |",
        "|---|---|---:|---|---:|---|",
    ]
    for name, pair in found.items():
        if "error" in pair:
            lines.append(f"| `{name}` | `{pair['ceiling']}` | failed: {_short(pair['error'])} |")
            continue
        cycles = " ".join(
            f"{c['ours']['requests_per_s']:.0f}/{c['ceiling']['requests_per_s']:.0f}"
            for c in pair["cycles"]
        )
        lines.append(
            f"| `{name}` | `{pair['ceiling']}` | {_ratio(pair['ratio'])} | "
            f"{pair['ratio_q1']:.2f} to {pair['ratio_q3']:.2f} | {_ratio(pair['cpu_ratio'])} | "
            f"{cycles} |"
        )
    return [*lines, ""]


def _rest_tables(raw: dict, summary: dict) -> list[str]:
    rest = raw.get("rest")
    lines: list[str] = []
    if rest:
        for load, title in (
            ("single", "Single row"),
            ("batch", f"{raw['settings']['batch_rows']:,} rows"),
        ):
            rows_label = "rows/s" if load == "batch" else ""
            lines += [
                f"## REST, {title} per request, {raw['settings']['connections']} connections",
                "",
                "| system | req/s | runs | " + (f"{rows_label} | " if rows_label else "")
                + "p50 ms | p99 ms | ÷ ours | ÷ ceiling | errors |",
                "|---|---:|---|" + ("---:|" if rows_label else "") + "---:|---:|---:|---:|---:|",
            ]  # fmt: skip
            for name, meta in rest["systems"].items():
                entry = summary["systems"][name]
                cell = entry[load]
                label = f"{meta['label']} `{name}`"
                if not entry["runs_ok"]:
                    lines.append(f"| {label} | failed: {_short(entry['first_error'])} |")
                    continue
                runs = "/".join(f"{v:.0f}" for v in cell["runs"])
                lines.append(
                    f"| {label} | {_num(cell['requests_per_s'])} | {runs} | "
                    + (f"{_num(cell['rows_per_s'])} | " if rows_label else "")
                    + f"{_num(cell['p50_ms'], 1)} | {_num(cell['p99_ms'], 1)} | "
                    f"{_ratio(cell['vs_ours'])} | {_ratio(cell['vs_ceiling'])} | {cell['errors']} |"
                )
            lines.append("")
        lines += [
            "## Cold start and memory",
            "",
            "| system | cold start s (median) | runs | RSS MB (tree) | PSS MB (tree) | processes |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for name, meta in rest["systems"].items():
            entry = summary["systems"][name]
            if not entry["runs_ok"]:
                continue
            runs = "/".join(f"{v:.2f}" for v in entry["cold_start_runs"])
            lines.append(
                f"| {meta['label']} `{name}` | {_num(entry['cold_start_s'], 2)} | {runs} | "
                f"{_num(entry['rss_mb'])} | {_num(entry['pss_mb'])} | {_num(entry['processes'])} |"
            )
        lines += [
            "",
            "RSS counts pages that forked workers share once per process; PSS splits them, so it "
            "is the fairer figure for servers that fork (seldon-core-microservice forks its "
            "workers, gRPC and metrics servers from one parent).",
            "",
        ]
        failed = {n: e for n, e in summary["systems"].items() if e["runs_failed"]}
        for name, entry in failed.items():
            lines.append(
                f"- `{name}` failed in {entry['runs_failed']} round(s): "
                f"{_short(entry['first_error'])}"
            )
        if failed:
            lines.append("")
    if raw.get("unavailable"):
        lines += ["## Not measured in this run", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in raw["unavailable"].items()]
        lines.append("")
    return lines


def _short(text: str | None, limit: int = 200) -> str:
    text = (text or "").replace("\n", " ").replace("|", "/")
    return text if len(text) <= limit else text[:limit] + "…"


def _targets(summary: dict) -> list[str]:
    lines = [
        "## The issues' speed targets",
        "",
        "| issue | what | measured | target | met |",
        "|---:|---|---:|---|---|",
    ]
    for t in summary["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(
            f"| {t['issue']} | {t['what']} | {_num(t['measured'], 2)} | {t['target']} | {met} |"
        )
    return [*lines, ""]


def _inprocess(raw: dict) -> list[str]:
    inproc = raw.get("inprocess")
    if not inproc:
        return []
    if "error" in inproc:
        return ["## In-process predict cost", "", f"failed: {_short(inproc['error'], 600)}", ""]
    keys = list(next(iter(inproc.values())).keys())
    header = " | ".join(k.replace("_rows_us", " row(s), µs") for k in keys)
    lines = [
        "## In-process cost of one call (the floor no server goes below)",
        "",
        f"| call | {header} |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, cells in inproc.items():
        values = " | ".join(
            _num(cells.get(k), 1) if cells.get(k) is not None else "not available" for k in keys
        )
        lines.append(f"| {name} | {values} |")
    return [*lines, ""]


def _storage(raw: dict) -> list[str]:
    store = raw.get("storage")
    if store is None:
        return []
    lines = ["## Download throughput from a local S3 server (moto_server)", ""]
    if "results" not in store:
        return [*lines, f"Not measured: {store.get('unavailable') or store.get('error')}", ""]
    lines += [
        "| data | tool | MB/s (median) | files/s | runs (MB/s) | peak RSS MB | ÷ aws s3 sync |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for name, by_tool in store["results"].items():
        data = store["data"][name]
        what = f"{data['files']:,} file(s), {data['bytes'] / 2**20:,.0f} MB"
        for tool in ("modelshelf fetch", "aws s3 sync"):
            if tool not in by_tool:
                continue
            cell = by_tool[tool]
            runs = "/".join(f"{r['mb_per_s']:.1f}" for r in cell["runs"])
            ratio = _ratio(by_tool.get("ratio")) if tool == "modelshelf fetch" else ""
            lines.append(
                f"| {what} | `{tool}` | {_num(cell['mb_per_s'], 1)} | "
                f"{_num(cell['files_per_s'], 1)} | {runs} | "
                f"{_num(cell['peak_rss_mb'])} | {ratio} |"
            )
    if store.get("aws_unavailable"):
        lines += ["", f"`aws s3 sync` not measured: {store['aws_unavailable']}."]
    return [
        *lines,
        "",
        f"{store.get('rounds', '?')} rounds, interleaved; each download goes to a new empty "
        "folder. Times include each tool's process start; the ratio is the other tool's time ÷ "
        "ours, same round. Peak RSS: the tool's process tree, sampled every 20 ms."
        + (
            f" Starting moto and uploading the data took {store['setup_s']:.0f} s (not measured)."
            if "setup_s" in store
            else ""
        ),
        "",
    ]


def _images(raw: dict) -> list[str]:
    found = raw.get("images")
    if found is None:
        return []
    lines = ["## Image sizes", ""]
    if not found["images"]:
        reason = found.get("error") or "no image tool"
        return [*lines, f"Not measured: {reason} (`make images` builds them).", ""]
    lines += [
        f"Read from {found['tool']}'s local store; `make bench` never builds images (building "
        "them all takes longer than the whole bench): `make images` does.",
        "",
        "| image | size MB |",
        "|---|---:|",
    ]
    lines += [
        f"| `{i['name']}` | {_num(i['size_mb']) if i['size_mb'] is not None else i['state']} |"
        for i in found["images"]
    ]
    return [*lines, ""]


def _phases(raw: dict) -> list[str]:
    phases = raw.get("phases")
    if not phases:
        return []
    cells = ", ".join(f"{name.replace('_', ' ')} {sec:,.0f} s" for name, sec in phases.items())
    return [
        f"Time spent: {raw['seconds']:,.0f} s in all; {cells} (the peer venvs install and our "
        "servers' modules are imported once while the models train, so those overlap; creating "
        "our own .venv and installing wrk happen before the harness starts and are not counted "
        "here).",
        "",
    ]


# Peers or rows the issue asks for that no run here can measure, and what stands in for them.
NEVER_MEASURABLE = (
    "Seldon Core's own prepackaged SKLearnServer, XGBoostServer and MLFlowServer: their code is "
    "not on PyPI; the identity model on `seldon-core-microservice` (its ceiling) stands in.",
    "KServe's sklearnserver: not on PyPI (only the `kserve` package is); a minimal scikit-learn "
    "model class on KServe's `ModelServer` stands in (`bench/peercode/kserve_sklearn.py`).",
    "KServe's xgbserver: not on PyPI either, so KServe has no XGBoost row; `mlflow models serve` "
    "serves the MLflow model only.",
)


def _not_measurable(raw: dict, summary: dict) -> list[str]:
    """Everything the issue asks for that this run has no figure for, said plainly."""
    lines = ["## What this run could not measure", ""]
    lines += [f"- {item}" for item in NEVER_MEASURABLE]
    for name, reason in (raw.get("unavailable") or {}).items():
        lines.append(f"- `{name}`: {reason}.")
    for name, entry in summary["systems"].items():
        if not entry["runs_ok"]:
            lines.append(f"- `{name}`: failed in every round: {_short(entry['first_error'])}")
    for t in summary["targets"]:
        if t["met"] is None:
            lines.append(f'- issue {t["issue"]} target "{t["what"]}": no figure in this run.')
    store = raw.get("storage")
    if store and "results" not in store:
        lines.append(f"- Download throughput: {store.get('unavailable') or store.get('error')}.")
    elif store and store.get("aws_unavailable"):
        lines.append(f"- `aws s3 sync`: {store['aws_unavailable']}.")
    found = raw.get("images")
    if found is not None:
        missing = [i["name"] for i in found["images"] if i["size_mb"] is None]
        if not found["images"]:
            lines.append(f"- Image sizes: {found.get('error') or 'no image tool'}.")
        elif missing:
            names = ", ".join(f"`{n}`" for n in missing)
            lines.append(f"- Image sizes of {names}: not built — run `make images`.")
    for name, env in (raw.get("peer_envs") or {}).items():
        if not env["ok"]:
            lines.append(f"- bench/peers/{name}: did not install: {_short(env['error'], 300)}")
    return [*lines, ""]


def _versions(raw: dict) -> list[str]:
    lines = ["## Versions", "", "| environment | packages |", "|---|---|"]
    ours = ", ".join(f"{k} {v}" for k, v in raw["versions"]["ours"].items())
    lines.append(f"| ours (.venv) | {ours} |")
    for name, env in (raw.get("peer_envs") or {}).items():
        packages = ", ".join(f"{k} {v}" for k, v in env["versions"].items()) or "—"
        by = f" by {env['installer']}" if env.get("installer") else ""
        state = (
            "cached venv" if env["cached"] else f"installed{by} in {env['install_seconds']:.0f} s"
        )
        if not env["ok"]:
            state = f"install failed: {_short(env['error'], 300)}"
        note = f" ({env['note']})" if env.get("note") else ""
        lines.append(f"| bench/peers/{name}{note}, {state} | {packages} |")
    return [*lines, ""]
