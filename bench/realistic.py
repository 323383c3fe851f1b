"""The realistic model set: the models users serve, on ``modelshelf serve`` (batching on and off)
beside the peers that serve them.

Models (trained here, fixed seeds): ``RandomForestClassifier(100)``,
``HistGradientBoostingClassifier``, a bare ``LogisticRegression`` (30 features, 3 classes),
``Pipeline(ColumnTransformer(OneHotEncoder, StandardScaler), LogisticRegression)`` fed by
``names`` + string/number rows, an XGBoost booster of 300 rounds x depth 6 on 30 features, a
LightGBM booster of 300 rounds x 31 leaves, an MLflow ``PythonModel`` (a LogisticRegression on
30 features behind user code).

For each system: single-row and 100-row requests at 1 and 16 connections (wrk), requests/s,
p50/p99, the server tree's CPU per request (psutil, over the load), cold start to the first
prediction and the tree's PSS; for each model its own in-process call (median), so the report
shows the server's overhead per request: 1 / throughput - the model's own time, at 1 connection.

The model's own call (``reference_calls``) is timed in this process on one thread with its
input built beforehand, in interleaved rounds: the framework's public call and the call our
server makes (its fast path where one serves); the overhead is measured against the faster.
The served call is also timed with its data out of the caches (``cold_call_seconds``): at one
connection a server meets its model cold, which the hot reference does not show.

``python -m bench.realistic`` (or ``make bench`` with ``BENCH_REALISTIC`` not ``0``) writes
``bench/results/realistic.md`` and ``.json``. ``BENCH_REALISTIC_SECONDS`` (default 2): each load;
``BENCH_REALISTIC_MODELS`` (default all): the models measured, by name, comma-separated.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from bench import load, peers, procs
from bench.config import BENCH, REPO, VENV_BIN
from bench.peers import PeerEnv
from bench.systems import OUR_SERVERS, PEERS_DIR, Ports, mlserver_command

ROWS = (1, 100)
CONNECTIONS = (1, 16)
FEATURES = 30
PIPELINE_NAMES = ["city", "kind", "rooms", "area"]
CITIES = ["paris", "lyon", "nice", "lille", "nantes", "rennes", "brest"]
KINDS = ["flat", "house", "studio"]


@dataclass(frozen=True)
class RealModel:
    name: str
    label: str
    server: str  # our class
    folder: Path  # what model_uri points at
    own_call: Callable[[int], Callable[[], object]]  # rows -> the framework's call, input built
    bodies: dict[str, Callable[[int], dict]]  # payload kind -> rows -> request body
    peers: tuple[str, ...] = ()  # peer kinds that serve it
    notes: str = ""
    image: str = ""  # our image that serves it (``podman run`` cold start), "" for none


# ------------------------------------------------------------------------------ models


def _numeric_rows(count: int, seed: int = 11) -> list[list[float]]:
    return np.round(np.random.default_rng(seed).normal(size=(count, FEATURES)), 4).tolist()


def _pipeline_rows(count: int, seed: int = 12) -> list[list]:
    rng = np.random.default_rng(seed)
    return [
        [
            CITIES[int(rng.integers(len(CITIES)))],
            KINDS[int(rng.integers(len(KINDS)))],
            int(rng.integers(1, 7)),
            round(float(rng.uniform(15, 200)), 1),
        ]
        for _ in range(count)
    ]


def _numeric_bodies(output: str | None) -> dict[str, Callable[[int], dict]]:
    def seldon(n: int) -> dict:
        return {"data": {"ndarray": _numeric_rows(n)}}

    def v2(n: int) -> dict:
        flat = [v for row in _numeric_rows(n) for v in row]
        body: dict = {
            "inputs": [
                {"name": "input-0", "shape": [n, FEATURES], "datatype": "FP64", "data": flat}
            ]
        }
        if output:
            body["outputs"] = [{"name": output}]
        return body

    return {
        "seldon": seldon,
        "v2": v2,
        "kserve-v1": lambda n: {"instances": _numeric_rows(n)},
        "mlflow": lambda n: {"inputs": _numeric_rows(n)},
    }


#: Bytes touched before each "cold" call: far more than a core's L2 (2 MB here), as what runs
#: between two requests (the client, the kernel's network path, other processes) leaves it.
EVICTION_BYTES = 16 * 1024 * 1024


def cold_call_seconds(call: Callable[[], object], calls: int = 200) -> float:
    """Median wall seconds of ``call`` right after ``EVICTION_BYTES`` of other memory were
    read: the model's data out of the caches, as a server finds it between requests at one
    connection (the trees of a 300-round booster are ~2 MB: a hot loop keeps them in L2).
    Only the call is timed."""
    other = np.ones(EVICTION_BYTES // 8)
    call()
    found = []
    for _ in range(calls):
        other.sum()
        started = time.perf_counter()
        call()
        found.append(time.perf_counter() - started)
    return statistics.median(found)


def interleaved_seconds(
    calls: dict[str, Callable[[], object]], rounds: int = 15, round_seconds: float = 0.02
) -> dict[str, tuple[float, float]]:
    """Each call's wall and CPU seconds: the median over ``rounds`` rounds, each timing a loop of
    every call in turn (~``round_seconds`` each), so a busy neighbour slows them all alike and
    one slow spell moves one round, not the figure (one call timed alone swung 612 <-> 1,129 µs
    between runs on the 300-round booster)."""
    loops = {}
    for name, call in calls.items():
        call()
        started = time.perf_counter()
        call()
        once = max(time.perf_counter() - started, 1e-6)
        loops[name] = max(1, min(1000, int(round_seconds / once)))
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            n = loops[name]
            started, started_cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                call()
            wall[name].append((time.perf_counter() - started) / n)
            cpu[name].append((time.process_time() - started_cpu) / n)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in calls}


def make_models(root: Path) -> list[RealModel]:
    """Train and save the realistic set under ``root``."""
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    root.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(4000, FEATURES, n_informative=12, n_classes=3, random_state=0)
    found = []

    def numeric_own(estimator: object) -> Callable[[int], Callable[[], object]]:
        def own(n: int) -> Callable[[], object]:
            rows = np.array(_numeric_rows(n))
            return lambda: estimator.predict_proba(rows)  # type: ignore[attr-defined]

        return own

    for name, label, estimator in (
        ("random_forest", "RandomForestClassifier(100)",
         RandomForestClassifier(100, random_state=0)),
        ("hist_gradient_boosting", "HistGradientBoostingClassifier(100 iterations)",
         HistGradientBoostingClassifier(random_state=0)),
        ("logistic_regression", "LogisticRegression, 30 features, 3 classes",
         LogisticRegression(max_iter=1000)),
    ):  # fmt: skip
        estimator.fit(X, y)
        folder = root / name
        folder.mkdir(exist_ok=True)
        joblib.dump(estimator, folder / "model.joblib")
        found.append(
            RealModel(
                name, label, "SKLearnServer", folder, numeric_own(estimator),
                _numeric_bodies("predict_proba"), ("mlserver-sklearn", "kserve-sklearn"),
                image="sklearnserver",
            )
        )  # fmt: skip

    rows = _pipeline_rows(3000, seed=5)
    frame = pd.DataFrame(rows, columns=PIPELINE_NAMES)
    target = ((frame["area"] / frame["rooms"] > 35) + (frame["city"] == "paris")).astype(int)
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("categories", OneHotEncoder(handle_unknown="ignore"), ["city", "kind"]),
                        ("numbers", StandardScaler(), ["rooms", "area"]),
                    ]
                ),
            ),
            ("classifier", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, target)
    folder = root / "onehot_pipeline"
    folder.mkdir(exist_ok=True)
    joblib.dump(pipeline, folder / "model.joblib")
    found.append(
        RealModel(
            "onehot_pipeline",
            "Pipeline(ColumnTransformer(OneHotEncoder, StandardScaler), LogisticRegression), "
            "`names` + string/number rows",
            "SKLearnServer",
            folder,
            lambda n: functools.partial(
                pipeline.predict_proba, pd.DataFrame(_pipeline_rows(n), columns=PIPELINE_NAMES)
            ),
            {"seldon": lambda n: {"data": {"names": PIPELINE_NAMES, "ndarray": _pipeline_rows(n)}}},
            notes="no peer row: KServe's and MLServer's sklearn runtimes take one numeric tensor",
        )
    )

    import xgboost as xgb

    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 6, "eta": 0.1, "nthread": 2},
        xgb.DMatrix(X, label=y),
        num_boost_round=300,
    )
    folder = root / "xgboost_300x6"
    folder.mkdir(exist_ok=True)
    booster.save_model(folder / "model.json")
    found.append(
        RealModel(
            "xgboost_300x6",
            "XGBoost booster, 300 rounds x depth 6, 30 features, 3 classes",
            "XGBoostServer",
            folder,
            # Loaded from its file, as served: the trained booster keeps its nthread=2, which
            # set two OpenMP threads even under threadpool_limits(1).
            _booster_call(folder / "model.json"),
            _numeric_bodies(None),
            ("mlserver-xgboost",),
            image="xgboostserver",
        )
    )

    import lightgbm as lgb

    classifier = lgb.LGBMClassifier(n_estimators=300, n_jobs=1, verbose=-1, random_state=0)
    lgb_booster = classifier.fit(X, y).booster_
    folder = root / "lightgbm_300"
    folder.mkdir(exist_ok=True)
    lgb_booster.save_model(folder / "model.txt")
    found.append(
        RealModel(
            "lightgbm_300",
            "LightGBM booster, 300 rounds x 31 leaves, 30 features, 3 classes",
            "LightGBMServer",
            folder,
            lambda n: functools.partial(
                lgb_booster.predict, np.array(_numeric_rows(n)), num_threads=1
            ),
            _numeric_bodies(None),
            notes="no peer row: the peers' venvs hold no LightGBM runtime (MLServer's "
            "`mlserver-lightgbm` and KServe's `lgbserver` are separate packages, not installed)",
            image="lightgbmserver",
        )
    )

    found.append(_python_model(root / "mlflow_pythonmodel", X, y))
    return found


def _booster_call(path: Path) -> Callable[[int], Callable[[], object]]:
    """XGBoost's public single call on a booster loaded from ``path`` (``nthread`` 0: its
    threads follow OpenMP's, one under ``threadpool_limits(1)``)."""
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(path))

    def own(n: int) -> Callable[[], object]:
        rows = np.array(_numeric_rows(n))
        return lambda: booster.inplace_predict(rows, validate_features=False)

    return own


class ScaledLogistic:  # an mlflow.pyfunc.PythonModel (the base class is mixed in when saved)
    """User code around an estimator: what an MLflow PythonModel typically is."""

    def __init__(self, estimator: object, scale: np.ndarray) -> None:
        self.estimator = estimator
        self.scale = scale

    def predict(self, context: object, model_input: object, params: object = None) -> object:
        values = np.asarray(model_input, dtype=np.float64) / self.scale
        return self.estimator.predict_proba(values)  # type: ignore[attr-defined]


def _python_model(folder: Path, X: np.ndarray, y: np.ndarray) -> RealModel:
    import shutil

    import cloudpickle
    import mlflow.pyfunc
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression(max_iter=1000).fit(X, y)
    model_class = type("ScaledLogisticModel", (ScaledLogistic, mlflow.pyfunc.PythonModel), {})
    python_model = model_class(estimator, np.abs(X).max(axis=0))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # no bench import when loaded
    if folder.exists():
        shutil.rmtree(folder)
    import sklearn

    mlflow.pyfunc.save_model(
        folder, python_model=python_model, pip_requirements=[f"scikit-learn=={sklearn.__version__}"]
    )
    loaded = mlflow.pyfunc.load_model(str(folder))
    import pandas as pd

    return RealModel(
        "mlflow_pythonmodel",
        "MLflow PythonModel (user code around a LogisticRegression, 30 features)",
        "MLFlowServer",
        folder,
        lambda n: functools.partial(loaded.predict, pd.DataFrame(_numeric_rows(n))),
        _numeric_bodies(None),
        ("mlflow-serve",),
    )


# ------------------------------------------------------------------------------ systems


@dataclass(frozen=True)
class RealSystem:
    name: str
    label: str
    payload: str
    path: str
    command: Callable[[Ports], list[str]]
    cwd: Path = REPO
    env: dict[str, str] = field(default_factory=dict)
    role: str = "ours"
    bin_dir: Path = VENV_BIN  # first on PATH (a peer's own venv: mlflow serve runs uvicorn)


SERVER_FOLDERS = {cls: folder for folder, cls in OUR_SERVERS.values()}
SERVER_FOLDERS["LightGBMServer"] = "lightgbmserver"


def _parameters(model: RealModel, model_uri: str) -> list[dict]:
    parameters = [{"name": "model_uri", "value": model_uri, "type": "STRING"}]
    if model.server == "SKLearnServer":
        parameters.append({"name": "method", "value": "predict_proba", "type": "STRING"})
    return parameters


#: Our servers run from a venv holding what our images install (``images/constraints.txt``,
#: the frameworks' extras), as each peer runs from its own: the dev venv also holds what only
#: the tests need (full mlflow brings pyarrow, which pandas then imports: +36 MB RSS, +7 MB
#: anonymous memory and ~70 ms of every scikit-learn cold start).
OURS_AS_IMAGES = PeerEnv(
    "modelshelf-images",
    (
        (
            "-c",
            str(REPO / "images" / "constraints.txt"),
            "-e",
            f"{REPO}[sklearn,xgboost,lightgbm,mlflow,s3,gcs]",
        ),
    ),
    note="modelshelf with its images' extras and pins",
    warm=(
        "modelshelf.serve.supervisor",
        "modelshelf.serve.rest",
        "modelshelf.serve.batching",
        "modelshelf.serve.metrics",
        "modelshelf.frameworks.sklearn",
        "modelshelf.frameworks.xgboost",
        "modelshelf.frameworks.lightgbm",
        "modelshelf.frameworks.mlflow",
        "sklearn.ensemble",
        "mlflow.pyfunc",
    ),
)


def ours_bin(say: Callable[[str], None] = print) -> Path:
    """The bin folder our servers run from: ``OURS_AS_IMAGES``, else (it cannot be made) the
    dev venv's, said so."""
    status = peers.ensure(OURS_AS_IMAGES, PEERS_DIR, peers.uv_path())
    if status.ok:
        return OURS_AS_IMAGES.bin(PEERS_DIR)
    say(f"realistic: {OURS_AS_IMAGES.name} could not be made, ours run from the dev venv: "
        f"{status.error[:300]}")  # fmt: skip
    return VENV_BIN


def _serve(model: RealModel, bin_dir: Path = VENV_BIN) -> Callable[[Ports], list[str]]:
    parameters = _parameters(model, str(model.folder))

    def command(ports: Ports) -> list[str]:
        return [
            str(bin_dir / "modelshelf"), "serve", model.server, "--service-type", "MODEL",
            "--parameters", json.dumps(parameters), "--http-port", str(ports.http),
            "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
            "--workers", "1", "--grpc-workers", "0",
        ]  # fmt: skip

    return command


def _mlserver(model: RealModel, implementation: str, model_file: str, work: Path):
    def command(ports: Ports) -> list[str]:
        folder = work / f"mlserver-{model.name}"
        uri = model.folder / model_file
        return mlserver_command(folder, ports, model.name, implementation, uri, 1)

    return command


def _kserve(model: RealModel) -> Callable[[Ports], list[str]]:
    def command(ports: Ports) -> list[str]:
        return [
            str(PEERS_DIR / "kserve" / "bin" / "python"),
            str(BENCH / "peercode" / "kserve_sklearn.py"),
            "--model_dir", str(model.folder), "--model_name", model.name,
            "--http_port", str(ports.http), "--grpc_port", str(ports.grpc), "--workers", "1",
        ]  # fmt: skip

    return command


def _mlflow_serve(model: RealModel) -> Callable[[Ports], list[str]]:
    def command(ports: Ports) -> list[str]:
        return [
            str(PEERS_DIR / "mlflow" / "bin" / "mlflow"), "models", "serve", "-m",
            str(model.folder), "--env-manager", "local", "-h", "127.0.0.1",
            "-p", str(ports.http), "-w", "1",
        ]  # fmt: skip

    return command


def systems_of(
    model: RealModel, work: Path, bin_dir: Path = VENV_BIN
) -> list[tuple[RealSystem, str | None]]:
    """Each system serving ``model``, with why it cannot run (``None``: it can); ours run
    from ``bin_dir``."""
    cwd = REPO / "servers" / SERVER_FOLDERS[model.server]
    found: list[tuple[RealSystem, str | None]] = [
        (RealSystem(f"serve-{model.name}", "`modelshelf serve`, batching on (default)",
                    "seldon", "/api/v1.0/predictions", _serve(model, bin_dir), cwd,
                    bin_dir=bin_dir), None),
        (RealSystem(f"serve-{model.name}-nobatch", "`modelshelf serve`, batching off",
                    "seldon", "/api/v1.0/predictions", _serve(model, bin_dir), cwd,
                    {"MODELSHELF_MAX_BATCH_SIZE": "1"}, bin_dir=bin_dir), None),
        (RealSystem(f"serve-{model.name}-nofast", "`modelshelf serve`, fast path off",
                    "seldon", "/api/v1.0/predictions", _serve(model, bin_dir), cwd,
                    {"MODELSHELF_FAST_PATH": "false"}, bin_dir=bin_dir), None),
    ]  # fmt: skip
    v2_path = f"/v2/models/{model.name}/infer"
    peers = {
        "mlserver-sklearn": lambda: RealSystem(
            f"mlserver-{model.name}", "MLServer 1.7.1 (sklearn runtime), 1 worker", "v2", v2_path,
            _mlserver(model, "mlserver_sklearn.SKLearnModel", "model.joblib", work), role="peer",
            bin_dir=PEERS_DIR / "mlserver" / "bin"),
        "mlserver-xgboost": lambda: RealSystem(
            f"mlserver-{model.name}", "MLServer 1.7.1 (xgboost runtime), 1 worker", "v2", v2_path,
            _mlserver(model, "mlserver_xgboost.XGBoostModel", "model.json", work), role="peer",
            bin_dir=PEERS_DIR / "mlserver" / "bin"),
        "kserve-sklearn": lambda: RealSystem(
            f"kserve-{model.name}", "KServe ModelServer (predict_proba), 1 worker", "kserve-v1",
            f"/v1/models/{model.name}:predict", _kserve(model), role="peer",
            bin_dir=PEERS_DIR / "kserve" / "bin"),
        "mlflow-serve": lambda: RealSystem(
            f"mlflow-serve-{model.name}", "`mlflow models serve`, 1 worker", "mlflow",
            "/invocations", _mlflow_serve(model), role="peer",
            bin_dir=PEERS_DIR / "mlflow" / "bin"),
    }  # fmt: skip
    venv_of = {"mlserver-sklearn": "mlserver", "mlserver-xgboost": "mlserver",
               "kserve-sklearn": "kserve", "mlflow-serve": "mlflow"}  # fmt: skip
    for kind in model.peers:
        venv = PEERS_DIR / venv_of[kind] / "bin" / "python"
        reason = None if venv.exists() else f"bench/peers/{venv_of[kind]} is not installed"
        found.append((peers[kind](), reason))
    return found


# ------------------------------------------------------------------------------ measuring


def _tree_cpu(pid: int) -> float:
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def tree_anonymous_mb(pid: int) -> float | None:
    """The tree's anonymous memory, PSS (``Pss_Anon``): forked workers' shared pages split
    among them. Unlike the whole PSS it does not move with what else runs on the machine: the
    file-backed part (libraries' code) is split with every process mapping the same files,
    and uv hard-links one copy of each wheel into every venv here."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with open(f"/proc/{process.pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss_Anon:"):
                        total += int(line.split()[1]) / 1024
    except (OSError, psutil.Error):
        return None
    return round(total, 1)


def _rows_answered(payload: str, answer: dict) -> int:
    if payload == "seldon":
        return len(answer["data"]["ndarray"])
    if payload == "v2":
        return int(answer["outputs"][0]["shape"][0])
    if payload == "kserve-v1":
        return len(answer["predictions"])
    found = answer["predictions"] if isinstance(answer, dict) else answer
    return len(found)


def measure_system(system: RealSystem, model: RealModel, work: Path, seconds: int) -> dict:
    ports = Ports(procs.free_port(), procs.free_port(), procs.free_port())
    url = f"http://127.0.0.1:{ports.http}{system.path}"
    bodies = {}
    scripts = {}
    for rows in ROWS:
        path = work / "payloads" / f"{system.name}-{rows}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(model.bodies[system.payload](rows)))
        bodies[rows] = path
        scripts[rows] = load.write_script(path, work / "lua")
    env = {**os.environ, **system.env}
    env["PATH"] = os.pathsep.join([str(system.bin_dir), env.get("PATH", "")])
    server = procs.start(
        system.command(ports), system.cwd, env, work / "logs" / f"{system.name}.log"
    )
    try:

        def check(answer: dict) -> str | None:
            found = _rows_answered(system.payload, answer)
            return None if found == 1 else f"expected 1 row, got {found}"

        cold, _ = procs.first_prediction(server, url, bodies[1].read_bytes(), check)
        for rows in ROWS:
            load.warm_up(url, bodies[rows].read_bytes(), 20)
        result: dict = {
            "cold_start_s": round(cold, 3),
            "memory": procs.tree_memory(server.process.pid),
        }
        result["memory"]["anonymous_pss_mb"] = tree_anonymous_mb(server.process.pid)
        for rows in ROWS:
            for connections in CONNECTIONS:
                before = _tree_cpu(server.process.pid)
                outcome = load.run_wrk(url, scripts[rows], seconds, connections, rows)
                used = _tree_cpu(server.process.pid) - before
                entry = outcome.to_dict()
                entry["cpu_ms_per_request"] = (
                    round(used / outcome.requests * 1000, 3) if outcome.requests else None
                )
                result[f"{rows}x{connections}"] = entry
        return result
    finally:
        procs.stop(server, timeout=1)


def identity_cold_starts(work: Path, times: int = 3) -> list[float]:
    """Cold starts of the identity model on ``seldon-core-microservice``: the yardstick the
    issue's cold-start target is relative to (so a noisy machine can check it)."""
    body = json.dumps({"data": {"ndarray": _numeric_rows(1)}}).encode()
    found = []
    for _ in range(times):
        ports = Ports(procs.free_port(), procs.free_port(), procs.free_port())
        command = [
            str(VENV_BIN / "seldon-core-microservice"), "IdentityModel", "--service-type", "MODEL",
            "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
            "--metrics-port", str(ports.metrics), "--workers", "1",
        ]  # fmt: skip
        log = work / "logs" / "identity.log"
        server = procs.start(command, BENCH / "identity", dict(os.environ), log)
        try:
            url = f"http://127.0.0.1:{ports.http}/api/v1.0/predictions"
            cold, _ = procs.first_prediction(server, url, body, lambda answer: None)
            found.append(round(cold, 3))
        finally:
            procs.stop(server, timeout=1)
    return found


def podman_cold_start(model: RealModel) -> dict:
    """``podman run`` of our image serving ``model`` to its first correct prediction, or why
    it could not be measured (no podman, image not built: ``make images``)."""
    from bench import images

    tool, reason = images.builder()
    if tool != "podman":
        return {"unavailable": reason or f"{tool} here: the cold start is measured with podman"}
    name = images.image_name(model.image)
    if images.size_of(tool, name) is None:
        return {"image": name, "unavailable": images.NOT_BUILT}
    body = json.dumps(model.bodies["seldon"](1)).encode()

    def check(answer: dict) -> str | None:
        found = _rows_answered("seldon", answer)
        return None if found == 1 else f"expected 1 row, got {found}"

    parameters = _parameters(model, images.MODEL_MOUNT)
    try:
        seconds = images.cold_start(tool, name, str(model.folder), parameters, body, check)
    except Exception as exc:  # reported, like a peer that fails
        return {"image": name, "error": f"{type(exc).__name__}: {exc}"[:400]}
    return {"image": name, "cold_start_s": round(seconds, 3)}


MODELS_VARIABLE = "BENCH_REALISTIC_MODELS"


def chosen_models() -> set[str] | None:
    """``BENCH_REALISTIC_MODELS``: the models to measure, by name, comma-separated (all when
    unset or empty)."""
    text = os.environ.get(MODELS_VARIABLE, "")
    names = {name.strip() for name in text.split(",") if name.strip()}
    return names or None


def served_call(model: RealModel) -> Callable[[int], Callable[[], object]]:
    """The model call ``modelshelf serve`` makes for a ``rows``-row Seldon request: our class
    loaded in this process (fast path as by default), its input built from the bench's request
    body as the server builds it (not timed), then only ``server.method.call`` -- the fast path
    where one serves (e.g. LightGBM's single-row predictor), the framework's call elsewhere."""
    from modelshelf.serve.ndarray import array_from_rows

    folder = REPO / "servers" / SERVER_FOLDERS[model.server]
    spec = importlib.util.spec_from_file_location(model.server, folder / f"{model.server}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parameters = {p["name"]: p["value"] for p in _parameters(model, str(model.folder))}
    server = getattr(module, model.server)(**parameters)
    server.load()

    def call(rows: int) -> Callable[[], object]:
        data = model.bodies["seldon"](rows)["data"]
        model_input = server.model_input(array_from_rows(data["ndarray"]), data.get("names", []))
        if server.threads is not None:
            server.threads.for_rows(rows)  # as ``serve`` sets them before each call
        return functools.partial(server.method.call, model_input)

    return call


def reference_calls(model: RealModel, say: Callable[[str], None] = print) -> dict:
    """The model's own call per row count, on one thread (the servers' OpenMP policy for
    small requests), inputs built beforehand: the framework's public call, and the call our
    server makes (``served_call``), timed in interleaved rounds. ``own_call_us`` -- what the
    overhead is measured against -- is the faster of the two: never a slower call than the
    one served (an accelerated call is the reference where it serves)."""
    from threadpoolctl import threadpool_limits

    found: dict = {key: {} for key in ("own_call_us", "own_call_cpu_us", "framework_call_us",
                                       "framework_call_cpu_us", "served_call_us",
                                       "served_call_cpu_us")}  # fmt: skip
    with threadpool_limits(1):
        try:
            served = served_call(model)
        except Exception as exc:  # reported; the framework's call is the reference then
            say(f"realistic: {model.name}: our server could not be loaded in process: {exc}")
            served = None
        for rows in ROWS:
            calls = {"framework": model.own_call(rows)}
            if served is not None:
                calls["served"] = served(rows)
            timed = interleaved_seconds(calls)
            for kind, (wall, cpu) in timed.items():
                found[f"{kind}_call_us"][rows] = round(wall * 1e6, 1)
                found[f"{kind}_call_cpu_us"][rows] = round(cpu * 1e6, 1)
            found["own_call_us"][rows] = round(min(w for w, _ in timed.values()) * 1e6, 1)
            found["own_call_cpu_us"][rows] = round(min(c for _, c in timed.values()) * 1e6, 1)
        if served is not None:  # what part of the overhead is the model's data out of cache
            found["served_cold_call_us"] = {1: round(cold_call_seconds(served(1)) * 1e6, 1)}
    return found


def run(work: Path, results: Path, seconds: int, say: Callable[[str], None] = print) -> dict:
    from threadpoolctl import threadpool_limits

    # One thread: OpenMP's spinning threads on a loaded 2-core machine make training crawl.
    with threadpool_limits(1):
        models = make_models(work / "models")
        say("realistic: models trained")
    found: dict = {"seconds_per_load": seconds, "models": {}}
    bin_dir = ours_bin(say)
    found["ours_venv"] = (
        str(bin_dir.parent.relative_to(REPO))
        if bin_dir.is_relative_to(REPO)
        else str(bin_dir.parent)
    )
    found["identity_cold_start_s"] = identity_cold_starts(work)
    say(f"realistic: identity cold starts {found['identity_cold_start_s']}")
    chosen = chosen_models()
    for model in models:
        if chosen is not None and model.name not in chosen:
            continue
        entry: dict = {
            "label": model.label,
            "server": model.server,
            **reference_calls(model, say),
            "notes": model.notes,
            "systems": {},
        }
        for system, reason in systems_of(model, work, bin_dir):
            if reason:
                entry["systems"][system.name] = {"label": system.label, "unavailable": reason}
                continue
            try:
                measured = measure_system(system, model, work, seconds)
            except Exception as exc:  # one broken system must not stop the others
                text = f"{type(exc).__name__}: {exc}"
                measured = {
                    "error": text[:400] + (" … " + text[-1200:] if len(text) > 1600 else "")
                }
                say(f"realistic: {system.name} FAILED: {text[:300]}")
            else:
                say(
                    f"realistic: {system.name}: "
                    + ", ".join(
                        f"{k} {measured[k]['requests_per_s']} req/s"
                        for k in measured
                        if "x" in k and isinstance(measured[k], dict)
                    )
                )
            entry["systems"][system.name] = {"label": system.label, "role": system.role, **measured}
        if model.image:
            entry["podman"] = podman_cold_start(model)
            say(f"realistic: podman run {model.name}: {entry['podman']}")
        found["models"][model.name] = entry
    results.mkdir(parents=True, exist_ok=True)
    (results / "realistic.json").write_text(json.dumps(found, indent=1) + "\n")
    (results / "realistic.md").write_text(render(json.loads(json.dumps(found))))
    return found


# ------------------------------------------------------------------------------ report


def _ours(model: dict, batching: bool = True) -> dict | None:
    for name, system in model["systems"].items():
        if system.get("role") == "ours" and name.endswith("-nobatch") != batching:
            return system if "1x1" in system else None
    return None


def _peers(model: dict) -> list[dict]:
    return [s for s in model["systems"].values() if s.get("role") == "peer" and "1x1" in s]


def standing(found: dict) -> list[str]:
    """Issue 20's targets against this run's figures, one table row per target and model."""
    rows = []

    def row(target: str, model: str, figure: str, met: bool | None) -> None:
        verdict = "—" if met is None else ("met" if met else "**not met**")
        rows.append(f"| {target} | {model} | {figure} | {verdict} |")

    identity = found.get("identity_cold_start_s") or []
    yardstick = statistics.median(identity) if identity else None
    sklearn_colds = [
        ours["cold_start_s"]
        for model in found["models"].values()
        if model.get("server") == "SKLearnServer" and (ours := _ours(model)) is not None
    ]
    sklearn_cold = statistics.median(sklearn_colds) if sklearn_colds else None
    for name, model in found["models"].items():
        ours = _ours(model)
        if ours is None:
            continue
        cold = ours["cold_start_s"]
        if model.get("server") == "MLFlowServer":
            # Issue 20: "MLflow with satisfied requirements <= 1.5 x that", that being the
            # cold-start target (1.0 s, or 2.5 x identity on a noisy machine). The ratio to
            # this run's scikit-learn starts is shown beside it: it grows whenever those get
            # faster, which MLflow's own import (~0.45 s) does not.
            figure, met = f"{cold:.2f} s", cold <= 1.5
            if yardstick:
                figure += f" = {cold / yardstick:.1f} x identity"
                met = met or cold <= 1.5 * 2.5 * yardstick
            if sklearn_cold:
                figure += f"; {cold / sklearn_cold:.2f} x scikit-learn's ({sklearn_cold:.2f} s)"
            row("MLflow cold start <= 1.5 x the target (1.5 s, or 3.75 x identity)", name,
                figure, met)  # fmt: skip
        else:
            figure, met = f"{cold:.2f} s", cold <= 1.0
            if yardstick:
                figure += f" = {cold / yardstick:.1f} x identity"
                met = met or cold <= 2.5 * yardstick
            row("cold start <= 1.0 s (or <= 2.5 x identity)", name, figure, met)
        podman = model.get("podman")
        if podman:
            if "cold_start_s" in podman:
                figure = f"{podman['cold_start_s']:.2f} s (`{podman['image']}`)"
                row("`podman run` cold start <= 1.5 s", name, figure, podman["cold_start_s"] <= 1.5)
            else:
                why = podman.get("unavailable") or podman.get("error", "")
                row("`podman run` cold start <= 1.5 s", name, f"not measured: {why}", None)
        kserve = [p for p in _peers(model) if "KServe" in p["label"]]
        if kserve:
            ours_mb, theirs = ours["memory"]["pss_mb"], kserve[0]["memory"]["pss_mb"]
            figure = f"{ours_mb:.0f} vs {theirs:.0f} MB ({ours['memory']['processes']} processes)"
            ours_anon = ours["memory"].get("anonymous_pss_mb")
            theirs_anon = kserve[0]["memory"].get("anonymous_pss_mb")
            if ours_anon and theirs_anon:
                figure += f"; anonymous {ours_anon:.0f} vs {theirs_anon:.0f} MB"
            row("PSS <= KServe's, 1 worker", name, figure, ours_mb <= theirs)
        peers = _peers(model)
        if peers:
            best = max(peers, key=lambda p: p["1x1"]["requests_per_s"])
            ratio = ours["1x1"]["requests_per_s"] / best["1x1"]["requests_per_s"]
            figure = f"{ratio:.2f} x ({best['label'].split(',')[0]})"
            row(">= 2 x the best peer, single row, 1 connection", name, figure, ratio >= 2)
        # Judged over the framework's own call (the "model's own call"); beside it the
        # overhead over the call our server makes, which a fast path makes faster.
        per_request = 1e6 / ours["1x1"]["requests_per_s"]
        framework = (model.get("framework_call_us") or model["own_call_us"])["1"]
        overhead = per_request - framework
        figure = f"{overhead:.0f} µs"
        own = model["own_call_us"]["1"]  # never slower than the call ``ours`` makes
        if own < framework:
            figure += f" ({per_request - own:.0f} µs over our fast path's call)"
        row("overhead <= 100 µs over the model's call", name, figure, overhead <= 100)
        off = _ours(model, batching=False)
        if off is not None and name in ("random_forest", "xgboost_300x6"):
            on16, off16 = ours["1x16"], off["1x16"]
            ratio = on16["requests_per_s"] / off16["requests_per_s"]
            figure = f"{ratio:.1f} x; p99 {on16['p99_ms']:.0f} vs {off16['p99_ms']:.0f} ms"
            met = ratio >= 3 and on16["p99_ms"] <= off16["p99_ms"]
            row("batching >= 3 x at 16 connections, p99 no worse", name, figure, met)
        if name in ("hist_gradient_boosting", "xgboost_300x6", "lightgbm_300"):
            cpu, own_cpu = ours["100x1"]["cpu_ms_per_request"], model["own_call_cpu_us"]["100"]
            p50, p99 = ours["100x1"]["p50_ms"], ours["100x1"]["p99_ms"]
            figure = f"{cpu * 1000 / own_cpu:.2f} x own CPU; p99 {p99 / p50:.1f} x p50"
            met = cpu * 1000 <= 1.5 * own_cpu and p99 <= 3 * p50
            row("100 rows: CPU <= 1.5 x own call, p99 <= 3 x p50", name, figure, met)
    return [
        "## Where we stand (issue 20's targets, this run)",
        "",
        "Computed from the tables below (`modelshelf serve`, batching on, unless said). Identity "
        "= the identity model on `seldon-core-microservice`, median of "
        f"{len(identity)} cold starts in this run: {', '.join(f'{t:.2f}' for t in identity)} s.",
        "",
        "| target | model | this run | |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def _reference_of(model: dict, system_name: str, system: dict) -> tuple[dict, dict]:
    """The own call a system's overhead is measured against: the faster of the framework's and
    our server's (``own_call_us``) for ours with its fast path on; the framework's for the
    others (a peer, ours with the fast path off), which make that call, not our fast path's."""
    ours_fast = system.get("role") == "ours" and not system_name.endswith("-nofast")
    if not ours_fast and model.get("framework_call_us"):
        return model["framework_call_us"], model["framework_call_cpu_us"]
    return model["own_call_us"], model["own_call_cpu_us"]


def _reference_text(model: dict) -> list[str]:
    own, own_cpu = model["own_call_us"], model["own_call_cpu_us"]
    text = (
        "Model's own call, in process, one thread, input built beforehand (median of "
        f"interleaved rounds): {own['1']:.0f} µs wall / {own_cpu['1']:.0f} µs CPU for 1 row, "
        f"{own['100']:.0f} / {own_cpu['100']:.0f} µs for 100 rows"
    )
    framework, served = model.get("framework_call_us"), model.get("served_call_us")
    if framework and served:
        text += (
            f" -- the faster of the framework's public call ({framework['1']:.0f} / "
            f"{framework['100']:.0f} µs) and the call our server makes ({served['1']:.0f} / "
            f"{served['100']:.0f} µs, its fast path where one serves); the peers' and the "
            "fast-path-off rows are measured against the framework's"
        )
    text += "."
    cold = model.get("served_cold_call_us")
    if cold:
        text += (
            f" The same served call on 1 row with its data out of the caches (after "
            f"{EVICTION_BYTES >> 20} MB of other memory were read, as between requests): "
            f"{cold['1']:.0f} µs -- part of the wall overhead below is this, not the server."
        )
    return [text]


def _memory(memory: dict) -> str:
    anonymous = memory.get("anonymous_pss_mb")
    return f"{memory['pss_mb']:.0f}" + (f" ({anonymous:.0f})" if anonymous else "")


def render(found: dict) -> str:
    lines = [
        "# Realistic model set",
        "",
        f"1 worker each, wrk {found['seconds_per_load']} s per load, one round (ratios within "
        "this run; the machine is shared). `1x16`: single-row requests at 16 connections; "
        "`100x1`: 100-row requests at 1 connection. CPU = the server tree's CPU time per request "
        "over the load; CPU overhead = that - the model's own call's CPU (negative: joined calls "
        "cost less than one call a request). Wall overhead = 1 / (req/s at 1 connection) - the "
        "model's own wall time. Batching off = `MODELSHELF_MAX_BATCH_SIZE=1`. PSS of the server's "
        "process tree after the first prediction; in brackets its anonymous part (`Pss_Anon`), "
        "which what else runs on the machine does not move. Ours run from "
        f"`{found.get('ours_venv', '.venv')}`.",
        "",
        *standing(found),
    ]
    for model in found["models"].values():
        lines += [f"## {model['label']}", "", *_reference_text(model)]
        if model.get("notes"):
            lines.append(f"{model['notes']}.")
        podman = model.get("podman") or {}
        if "cold_start_s" in podman:
            lines.append(
                f"`podman run` of `{podman['image']}` (its own entry point, the model mounted): "
                f"{podman['cold_start_s']:.2f} s to the first correct prediction."
            )
        lines += [
            "",
            "| system | cold s | PSS MB (anon.) | rows x conns | req/s | p50 ms | p99 ms "
            "| CPU ms/req | CPU overhead µs/req | wall overhead µs/req |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, system in model["systems"].items():
            if "unavailable" in system or "error" in system:
                why = system.get("unavailable") or system.get("error", "")[:200]
                lines.append(f"| {system['label']} | — | — | — | {why} | | | | | |")
                continue
            own, own_cpu = _reference_of(model, name, system)
            first = True
            for rows in ROWS:
                for connections in CONNECTIONS:
                    load_entry = system[f"{rows}x{connections}"]
                    rate = load_entry["requests_per_s"]
                    wall = f"{1e6 / rate - own[str(rows)]:.0f}" if connections == 1 and rate else ""
                    cpu = load_entry["cpu_ms_per_request"]
                    cpu_over = f"{cpu * 1000 - own_cpu[str(rows)]:.0f}" if cpu is not None else ""
                    lines.append(
                        "| "
                        + " | ".join(
                            [
                                system["label"] if first else "",
                                f"{system['cold_start_s']:.2f}" if first else "",
                                _memory(system["memory"]) if first else "",
                                f"{rows}x{connections}",
                                f"{rate:,.0f}",
                                f"{load_entry['p50_ms']:.2f}",
                                f"{load_entry['p99_ms']:.2f}",
                                f"{cpu}",
                                cpu_over,
                                wall,
                            ]
                        )
                        + " |"
                    )
                    first = False
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    from bench.config import Config

    cfg = Config.from_env()
    seconds = int(os.environ.get("BENCH_REALISTIC_SECONDS", "2"))
    run(cfg.work / "realistic", cfg.results, seconds, lambda text: print(text, flush=True))
    print((cfg.results / "realistic.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
