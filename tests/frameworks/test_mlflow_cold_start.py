"""MLflow's part of a cold start: importing MLflow (in the parent, before the fork) and loading
a PythonModel (in the worker: its pickle imports scikit-learn) run without the garbage
collector's automatic passes, and what they allocated is frozen after, while the model answers
exactly as MLflow's own pyfunc does. Each case runs in a fresh interpreter: this one imported
MLflow long ago. The time saved is in ``make bench`` (``bench/results/realistic.md``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.timeout(240)

#: What a fresh interpreter prints about the collector around ``code``: the generation of
#: each collection that ran, whether it is on after, and how many objects it still tracks.
COLLECTIONS = """
import gc, json, sys
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
{code}
gc.callbacks.clear()
print(json.dumps({{"collections": collections, "enabled": gc.isenabled(),
                   "unfrozen": len(gc.get_objects()), "result": result}}))
"""


def collections_around(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", COLLECTIONS.format(code=textwrap.dedent(code))],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


class ScaledLogistic:
    """A PythonModel's user code around an estimator (mixed with ``PythonModel`` when saved,
    pickled by value: the server does not import this module)."""

    def __init__(self, estimator: object, scale: np.ndarray) -> None:
        self.estimator = estimator
        self.scale = scale

    def predict(self, context: object, model_input: object, params: object = None) -> object:
        return self.estimator.predict_proba(np.asarray(model_input, dtype=np.float64) / self.scale)


@pytest.fixture(scope="module")
def python_model(tmp_path_factory: pytest.TempPathFactory):
    import cloudpickle
    import mlflow.pyfunc

    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 6))
    model_class = type("ScaledLogisticModel", (ScaledLogistic, mlflow.pyfunc.PythonModel), {})
    model = model_class(LogisticRegression().fit(X, X[:, 0] + X[:, 1] > 0), np.abs(X).max(axis=0))
    folder = tmp_path_factory.mktemp("mlflow-cold-start") / "python-model"
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        mlflow.pyfunc.save_model(folder, python_model=model, pip_requirements=["scikit-learn"])
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return folder


def test_mlflow_is_imported_without_collector_passes_and_frozen_after():
    found = collections_around(
        """
        from modelshelf.frameworks.mlflow import import_mlflow_before_fork
        before = len(gc.get_objects())
        collections.clear()
        import_mlflow_before_fork()
        result = ["mlflow.pyfunc" in sys.modules, before]
        """
    )
    imported, before = found["result"]
    assert imported
    # one full collection before (of what garbage there was), then none: hundreds otherwise
    assert found["collections"] == [2]
    assert found["enabled"]
    assert found["unfrozen"] < before + 1_000  # MLflow alone tracks ~150,000


def test_a_collector_turned_off_stays_off_and_nothing_is_frozen():
    found = collections_around(
        """
        gc.disable()
        from modelshelf.frameworks.mlflow import import_mlflow_before_fork
        import_mlflow_before_fork()
        result = gc.get_freeze_count()
        """
    )
    assert found == {**found, "enabled": False, "result": 0}
    assert found["unfrozen"] > 100_000


def test_a_python_model_loads_without_automatic_full_collections(python_model):
    """The pickle imports scikit-learn while the worker loads: no automatic pass over it, only
    ``ModelServer.load``'s full collection after the load (the garbage of the model's own
    loading code is not frozen), and the model's answers are pyfunc's own."""
    import mlflow.pyfunc

    X = np.random.default_rng(4).normal(size=(5, 6))
    found = collections_around(
        f"""
        from modelshelf.frameworks.mlflow import MLFlowServer
        server = MLFlowServer({str(python_model)!r})
        assert "sklearn.linear_model" not in sys.modules  # the pickle imports it
        collections.clear()
        server.load()
        result = server.predict({X.tolist()!r}, []).tolist()
        """
    )
    assert [generation for generation in found["collections"] if generation > 0] == [2]
    assert found["enabled"]
    expected = mlflow.pyfunc.load_model(str(python_model)).predict(X)
    np.testing.assert_array_equal(np.asarray(found["result"]), np.asarray(expected))


class CyclicGarbageAtLoad:
    """A PythonModel whose ``load_context`` leaves garbage in a reference cycle behind (what the
    collector, not reference counting, frees), and keeps a weak reference to it."""

    def load_context(self, context: object) -> None:
        import weakref

        class Node:
            pass

        node = Node()
        node.cycle = node
        self.garbage = weakref.ref(node)

    def __getstate__(self) -> dict:  # MLflow loads it once before saving: no weak reference
        return {k: v for k, v in vars(self).items() if k != "garbage"}

    def predict(self, context: object, model_input: object, params: object = None) -> object:
        return np.asarray(model_input, dtype=np.float64).sum(axis=1)


def test_garbage_of_the_models_own_loading_code_is_collected_not_frozen(tmp_path):
    import cloudpickle
    import mlflow.pyfunc

    from modelshelf.frameworks.mlflow import MLFlowServer

    model_class = type("CyclicGarbageModel", (CyclicGarbageAtLoad, mlflow.pyfunc.PythonModel), {})
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        mlflow.pyfunc.save_model(tmp_path / "model", python_model=model_class())
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    server = MLFlowServer(str(tmp_path / "model"))
    server.load()
    assert server.model.unwrap_python_model().garbage() is None
    assert server.predict([[1.0, 2.0]], []).tolist() == [3.0]


class TurnsCollectorOffAtLoad:
    """A PythonModel whose ``load_context`` turns the garbage collector off, or sets its own
    thresholds (``setting``), for the life of the process."""

    def __init__(self, setting: str) -> None:
        self.setting = setting

    def load_context(self, context: object) -> None:
        import gc

        if self.setting == "disable":
            gc.disable()
        else:
            gc.set_threshold(50_000, 20, 20)

    def predict(self, context: object, model_input: object, params: object = None) -> object:
        return np.asarray(model_input, dtype=np.float64).sum(axis=1)


@pytest.mark.parametrize(
    ("setting", "enabled", "thresholds"),
    [("disable", False, "as before"), ("thresholds", True, [50_000, 20, 20])],
)
def test_the_models_own_collector_setting_outlasts_the_pause(
    tmp_path, setting, enabled, thresholds
):
    """The pause during the load does not undo what the model's loading code chose: a
    collector it turned off stays off, thresholds it set stay set (the pause's own, 0, is
    undone only where the model left it)."""
    import cloudpickle
    import mlflow.pyfunc

    model_class = type("CollectorModel", (TurnsCollectorOffAtLoad, mlflow.pyfunc.PythonModel), {})
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        mlflow.pyfunc.save_model(tmp_path / "model", python_model=model_class(setting))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    found = collections_around(
        f"""
        from modelshelf.frameworks.mlflow import MLFlowServer
        before = list(gc.get_threshold())
        server = MLFlowServer({str(tmp_path / "model")!r})
        server.load()
        result = [before, list(gc.get_threshold()), server.predict([[1.0, 2.0]], []).tolist()]
        """
    )
    before, after, answer = found["result"]
    assert found["enabled"] is enabled
    assert after == (before if thresholds == "as before" else thresholds)
    assert answer == [3.0]
