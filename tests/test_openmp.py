"""The OpenMP thread policy of ``modelshelf.openmp``: threads per process from cores and workers,
one thread for small requests, and -- for every OpenMP framework -- a worker forked after the
parent loaded the model answers a multi-threaded prediction (GNU OpenMP hangs there otherwise)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification

from modelshelf import openmp
from modelshelf.errors import ConfigurationError

ROWS = 5000  # above every SINGLE_THREAD_MAX_ROWS: the forked worker's call is multi-threaded
SMALL_ROWS = 100  # a batch the policy keeps on one thread for every framework


def test_threads_per_process_follow_cores_and_workers(monkeypatch):
    cores = openmp.available_cores()
    monkeypatch.setattr(sys, "argv", ["x"])
    monkeypatch.setenv("GUNICORN_WORKERS", "1")
    assert openmp.default_threads() == cores
    monkeypatch.setenv("GUNICORN_WORKERS", str(cores))
    assert openmp.default_threads() == 1
    monkeypatch.setattr(sys, "argv", ["seldon-core-microservice", "M", "--workers", "64"])
    assert openmp.rest_workers() == 64
    assert openmp.default_threads() == 1
    monkeypatch.setattr(sys, "argv", ["modelshelf", "serve", "M", "--workers=3"])
    assert openmp.rest_workers() == 3
    monkeypatch.setenv("GUNICORN_WORKERS", "many")
    monkeypatch.setattr(sys, "argv", ["x"])
    with pytest.raises(ConfigurationError, match=r"^environment variable GUNICORN_WORKERS='many'"):
        openmp.rest_workers()
    monkeypatch.setattr(sys, "argv", ["modelshelf", "serve", "M", "--workers=some"])
    with pytest.raises(ConfigurationError, match=r"^option --workers='some'"):
        openmp.rest_workers()


def test_small_requests_run_on_one_thread_large_ones_on_the_process_count():
    from threadpoolctl import threadpool_info

    def openmp_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"}

    threads = openmp.ProcessThreads(requested=2, platform="xgboost")
    small = openmp.SINGLE_THREAD_MAX_ROWS["xgboost"]
    assert threads.for_rows(1) == 1
    assert openmp_threads() == {1}
    assert threads.for_rows(small) == 1
    assert threads.for_rows(small + 1) == 2
    assert openmp_threads() == {2}
    assert threads.nthread == 2


def test_what_counts_as_small_is_the_frameworks():
    """HistGradientBoosting opens a parallel region per tree: a 100-row call stays on one
    thread there, while a booster's (one region per call) gets the process's count at 300."""
    assert openmp.ProcessThreads(2, platform="sklearn").for_rows(1000) == 1
    assert openmp.ProcessThreads(2, platform="sklearn").for_rows(5000) == 2
    assert openmp.ProcessThreads(2, platform="lightgbm").for_rows(300) == 2
    assert openmp.ProcessThreads(2, platform="some-new-framework").for_rows(100) == 1
    assert openmp.ProcessThreads(2, single_thread_max_rows=8).for_rows(9) == 2


def test_a_booster_s_small_requests_follow_its_trees(tmp_path):
    """By rows x trees: the realistic 900-tree boosters keep the 256 rows measured; a 60-tree
    booster keeps 3,840 on one thread, a huge one at least one row, a tiny one at most the cap."""
    import xgboost as xgb

    threads = openmp.ProcessThreads(2, platform="xgboost")
    threads.fit_to_trees(900)
    assert threads.for_rows(256) == 1
    assert threads.for_rows(257) == 2
    threads.fit_to_trees(60)
    assert threads.for_rows(1000) == 1
    assert threads.for_rows(3840) == 1
    assert threads.for_rows(3841) == 2
    threads.fit_to_trees(10**7)
    assert threads.for_rows(1) == 1
    assert threads.for_rows(2) == 2
    threads.fit_to_trees(2)
    assert threads.single_thread_max_rows == openmp.SINGLE_THREAD_MAX_ROWS_BY_TREES
    threads.fit_to_trees(0)  # no trees (gblinear): unchanged
    assert threads.single_thread_max_rows == openmp.SINGLE_THREAD_MAX_ROWS_BY_TREES
    given = openmp.ProcessThreads(2, single_thread_max_rows=8, platform="xgboost")
    given.fit_to_trees(60)  # a caller's own limit is not the platform's default: kept
    assert given.single_thread_max_rows == 8

    from modelshelf.frameworks.xgboost import XGBoostServer

    X, y = make_classification(300, 4, n_informative=3, n_redundant=0, n_classes=3,
                               random_state=0)  # fmt: skip
    params = {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}
    xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=20).save_model(
        tmp_path / "model.json"
    )
    server = XGBoostServer(str(tmp_path))
    server.load()
    assert server.description["trees"] == 60
    assert server.threads.single_thread_max_rows == openmp.SINGLE_THREAD_MAX_TREE_ROWS // 60


RECONFIGURE_SCRIPT = """
import os, sys
from modelshelf import openmp

threads = openmp.ProcessThreads(requested={requested})
assert threads.for_rows(1) == 1 and threads.nthread == {requested}
threads.requested = {requested} + 1  # what a forked process would now fix its count from
pid = os.fork()
if pid == 0:
    # the child fixes its own count on its first call, and sets its thread's OpenMP count anew
    threads.for_rows(1)
    os._exit(0 if threads.nthread == {requested} + 1 else 3)
_, status = os.waitpid(pid, 0)
threads.for_rows(1)  # the parent's count is fixed: its first call fixed it
print("child", os.waitstatus_to_exitcode(status), "parent", threads.nthread)
"""


def test_a_forked_process_fixes_its_own_thread_count_on_its_first_call():
    """No system call per request tells processes apart (a fork count does): a process forked
    after a call still configures itself on its own first call; its parent keeps its count."""
    script = textwrap.dedent(RECONFIGURE_SCRIPT).format(requested=2)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["child", "0", "parent", "2"], done.stdout + done.stderr


def test_a_negative_thread_count_is_refused():
    with pytest.raises(ConfigurationError, match="nthread"):
        openmp.ProcessThreads(requested=-1)


# ------------------------------------------------------------------------ fork safety

FORK_SCRIPT = """
import os, signal, sys
import numpy as np
from modelshelf.frameworks.{module} import {cls}

server = {cls}({uri!r}{extra})
server.init_metadata()  # the parent loads the model, as both front ends do
X = np.load({rows!r})
pid = os.fork()
if pid == 0:  # the worker: a multi-threaded call must answer
    signal.alarm(60)
    try:
        server.predict(X[:{small}], [])
        print("threads after a small call", len(os.listdir("/proc/self/task")))
        out = server.predict(X, [])
        threads = len(os.listdir("/proc/self/task"))
        print("answered", len(out), "threads", threads, "nthread", server.threads.nthread)
        sys.stdout.flush()
        os._exit(0)
    except BaseException as exc:
        print("failed", exc)
        sys.stdout.flush()
        os._exit(3)
_, status = os.waitpid(pid, 0)
print("status", status)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("openmp")
    X, y = make_classification(n_samples=ROWS, n_features=10, random_state=0)
    np.save(root / "rows.npy", X)
    return root, X, y


def _model_folder(kind: str, data) -> Path:
    root, X, y = data
    folder = root / kind
    folder.mkdir(exist_ok=True)
    if kind == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        joblib.dump(HistGradientBoostingClassifier(max_iter=20).fit(X, y), folder / "model.joblib")
    elif kind == "xgboost":
        import xgboost as xgb

        booster = xgb.train({"max_depth": 4}, xgb.DMatrix(X, y), 20)
        booster.save_model(folder / "model.json")
    elif kind.startswith("lightgbm"):
        import lightgbm as lgb

        model = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
        if kind == "lightgbm_txt":
            model.booster_.save_model(folder / "model.txt")
        elif kind == "lightgbm_bst":
            model.booster_.save_model(folder / "model.bst")
        else:
            joblib.dump(model, folder / "model.joblib")
    return folder


SERVERS = {
    "hist_gradient_boosting": ("sklearn", "SKLearnServer"),
    "xgboost": ("xgboost", "XGBoostServer"),
    "lightgbm_txt": ("lightgbm", "LightGBMServer"),
    "lightgbm_bst": ("lightgbm", "LightGBMServer"),
    "lightgbm_joblib": ("lightgbm", "LightGBMServer"),
}


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_worker_forked_after_the_parent_loaded_answers_a_multi_threaded_call(kind, data):
    if kind.startswith("lightgbm"):
        pytest.importorskip("modelshelf.frameworks.lightgbm")
    module, cls = SERVERS[kind]
    folder = _model_folder(kind, data)
    extra = ", nthread=2" if module == "xgboost" else ""
    script = textwrap.dedent(FORK_SCRIPT).format(
        module=module,
        cls=cls,
        uri=str(folder),
        extra=extra,
        rows=str(data[0] / "rows.npy"),
        small=SMALL_ROWS,
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,  # the child's alarm fires first: a hang fails, it never blocks
        env={"GUNICORN_WORKERS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"answered {ROWS}" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "status 0" in done.stdout, done.stdout
    after_small = int(done.stdout.split("threads after a small call ")[1].split()[0])
    threads = int(done.stdout.split("answered")[1].split("threads ")[1].split()[0])
    nthread = int(done.stdout.split("nthread ")[1].split()[0])
    if nthread > 1:  # the small call ran on the worker's thread; only the large one woke more
        assert threads > after_small, f"{kind}: the worker's large call started no OpenMP thread"
