"""``modelshelf.deferred_imports``: scikit-learn imported inside ``deferring()`` leaves pandas
unimported until something reads it, and every check for a DataFrame stays right. Each case
runs in a fresh interpreter (this one has imported pandas long ago)."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import textwrap

import pytest

from modelshelf.deferred_imports import DEFER_IMPORTS_ENV, DeferredAttribute, deferring
from modelshelf.errors import ConfigurationError


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_scikit_learn_imported_while_deferring_leaves_pandas_unimported():
    out = run_python(
        """
        import builtins, sys
        import numpy as np
        original = builtins.__import__
        from modelshelf import deferred_imports
        with deferred_imports.deferring(True):
            import sklearn.ensemble
            from sklearn.ensemble import RandomForestClassifier
        assert builtins.__import__ is original, "the import hook outlived the block"
        from sklearn.utils import fixes
        from sklearn.utils._dataframe import is_pandas_df
        assert "pandas" not in sys.modules
        assert isinstance(fixes.pd, deferred_imports.DeferredModule), fixes.pd
        print("deferred", repr(fixes.pd))
        X = np.random.default_rng(0).normal(size=(50, 3))
        model = RandomForestClassifier(5, random_state=0).fit(X, X[:, 0] > 0)
        model.predict_proba(X[:2])
        assert not is_pandas_df(X) and "pandas" not in sys.modules, "a prediction imported it"
        frame = fixes.pd.DataFrame(X, columns=["a", "b", "c"])  # first read: the real import
        import pandas
        assert sys.modules["pandas"] is pandas and fixes.pd.DataFrame is pandas.DataFrame
        assert is_pandas_df(frame)
        print("imported", repr(fixes.pd))
        """
    )
    assert "deferred <module 'pandas' (deferred)>" in out
    assert "imported <module 'pandas' (imported)>" in out


#: Every deferred scipy name scikit-learn imports, used through scikit-learn's own code.
USES_OF_DEFERRED_SCIPY = """
import json, sys
import numpy as np
from modelshelf import deferred_imports
with deferred_imports.deferring(DEFER):
    import sklearn.ensemble, sklearn.linear_model, sklearn.covariance, sklearn.preprocessing
    import sklearn.metrics, sklearn.model_selection
    from sklearn._loss.link import MultinomialLogit
    from sklearn.utils.fixes import _mode
    X = np.random.default_rng(0).normal(size=(40, 3))
    model = sklearn.ensemble.HistGradientBoostingClassifier(max_iter=5).fit(X, X[:, 0] > 0)
    proba = model.predict_proba(X[:3])
stats_imported = "scipy.stats" in sys.modules
found = {
    "proba": proba.tolist(),
    "rankdata (metrics)": sklearn.metrics.label_ranking_average_precision_score(
        [[1, 0, 0], [0, 1, 1]], [[0.75, 0.5, 1.0], [1.0, 0.2, 0.1]]
    ),
    "rankdata (search)": sklearn.model_selection.GridSearchCV(
        sklearn.linear_model.LogisticRegression(), {"C": [0.1, 1.0]}, cv=2
    ).fit(X, X[:, 0] > 0).cv_results_["rank_test_score"].tolist(),
    "gmean": MultinomialLogit().link(np.array([[0.2, 0.3, 0.5]])).tolist(),
    "chi2": sklearn.covariance.MinCovDet(random_state=0).fit(X).covariance_.tolist(),
    "stats": sklearn.preprocessing.QuantileTransformer(
        n_quantiles=10, output_distribution="normal"
    ).fit_transform(X)[:2].tolist(),
    "BSpline": sklearn.preprocessing.SplineTransformer().fit_transform(X)[:2].tolist(),
    "scipy.stats (fixes)": _mode(np.array([1, 2, 2, 3]))[0].tolist(),
}
print(json.dumps({"stats imported while loading": stats_imported, **found}))
"""


def test_scikit_learn_answers_the_same_with_scipy_stats_deferred():
    """scikit-learn's own code through every deferred scipy name gives what it gives with
    nothing deferred; deferred, scipy.stats is not imported by a model's load and prediction."""
    deferred = json.loads(run_python(USES_OF_DEFERRED_SCIPY.replace("DEFER", "True")))
    as_written = json.loads(run_python(USES_OF_DEFERRED_SCIPY.replace("DEFER", "False")))
    assert deferred.pop("stats imported while loading") is False
    assert as_written.pop("stats imported while loading") is True
    assert deferred == as_written


def test_isinstance_against_a_deferred_class_answers_for_the_real_class():
    """``from scipy.interpolate import BSpline`` deferred: ``isinstance(x, BSpline)`` and
    ``issubclass`` import the class and answer as the real one would (not False for all)."""
    import fractions

    stand_in = DeferredAttribute("fractions", "Fraction")
    assert isinstance(fractions.Fraction(1, 3), stand_in)
    assert isinstance(fractions.Fraction(1, 3), (int, stand_in))
    assert not isinstance(0.5, stand_in)
    assert issubclass(fractions.Fraction, stand_in) and not issubclass(float, stand_in)


def test_other_modules_import_pandas_as_written_while_deferring():
    out = run_python(
        """
        import sys
        from modelshelf import deferred_imports
        with deferred_imports.deferring(True):
            import pandas
        print(type(pandas).__name__, sys.modules["pandas"] is pandas)
        """
    )
    assert out.split() == ["module", "True"]


def test_the_switch_off_leaves_imports_as_written():
    out = run_python(
        """
        import sys
        from modelshelf import deferred_imports
        with deferred_imports.deferring():
            import sklearn.base
        from sklearn.utils import fixes
        print(type(fixes.pd).__name__, "pandas" in sys.modules)
        """,
        env={**os.environ, DEFER_IMPORTS_ENV: "false"},
    )
    assert out.split() == ["module", "True"]


def test_the_hook_is_removed_when_the_load_fails():
    """A model that fails to load leaves ``builtins.__import__`` as it found it."""
    original = builtins.__import__
    with pytest.raises(RuntimeError, match="unpickling failed"), deferring(True):
        assert builtins.__import__ is not original
        raise RuntimeError("unpickling failed")
    assert builtins.__import__ is original


def test_a_class_that_loads_in_a_worker_loads_deferring():
    """``load_user_model`` (each REST and gRPC worker's load: MLflow's pyfunc models import
    their framework there) defers what the parent defers."""
    out = run_python(
        """
        import sys
        from modelshelf.serve.supervisor import load_user_model

        class LoadsScikitLearn:
            def load(self):
                import sklearn.metrics  # scipy.stats at the top of sklearn.metrics._ranking

                self.loaded = sklearn.metrics.accuracy_score([1, 0], [1, 1])

        model = LoadsScikitLearn()
        assert "sklearn" not in sys.modules
        load_user_model(model)
        print(model.loaded, "scipy.stats" in sys.modules)
        """
    )
    assert out.split() == ["0.5", "False"]


def test_a_wrong_switch_value_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv(DEFER_IMPORTS_ENV, "later")
    with pytest.raises(ConfigurationError, match=DEFER_IMPORTS_ENV), deferring():
        pass


def test_seldon_cores_grpc_server_builds_from_deferred_grpc_imports():
    """seldon-core's wrapper imported while deferring holds stand-ins for gRPC and gRPC
    reflection; its gRPC server, built later, imports them for real and serves."""
    out = run_python(
        """
        import sys
        from modelshelf import deferred_imports
        with deferred_imports.deferring(True):
            import seldon_core.wrapper as wrapper
        assert "grpc" not in sys.modules and "grpc_reflection" not in sys.modules
        print(repr(wrapper.grpc), repr(wrapper.reflection))

        from seldon_core.metrics import SeldonMetrics

        class Echo:
            def predict(self, X, names):
                return X

        server = wrapper.get_grpc_server(Echo(), SeldonMetrics())
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        import grpc
        from seldon_core.proto import prediction_pb2, prediction_pb2_grpc
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_pb2_grpc.ModelStub(channel)
            request = prediction_pb2.SeldonMessage(
                data=prediction_pb2.DefaultData(
                    tensor=prediction_pb2.Tensor(shape=[1, 2], values=[1.5, 2.5])
                )
            )
            answer = stub.Predict(request, timeout=10)
        server.stop(0)
        print(list(answer.data.tensor.values), repr(wrapper.grpc))
        """
    )
    lines = out.splitlines()
    assert lines[0] == "<module 'grpc' (deferred)> <grpc_reflection.v1alpha.reflection (deferred)>"
    assert lines[1] == "[1.5, 2.5] <module 'grpc' (imported)>"


def test_a_stand_in_resolved_after_the_freeze_is_frozen_too():
    """In a serving process (its loaded objects frozen), a stand-in first used by a request
    imports its module then: those objects are frozen too, out of every full collection."""
    out = run_python(
        """
        import gc, sys
        from modelshelf.deferred_imports import DeferredAttribute
        assert "scipy.stats" not in sys.modules
        rankdata = DeferredAttribute("scipy.stats", "rankdata")
        gc.collect(); gc.freeze()
        assert list(rankdata([3, 1, 2])) == [3.0, 1.0, 2.0]
        print(len(gc.get_objects()))
        """
    )
    assert int(out) < 2_000  # scipy.stats alone tracks tens of thousands


def test_a_module_imported_already_is_returned_without_freezing_anything():
    """``import_late`` of a module something imported before (MLflow's pyfunc imports pandas
    before its server asks for it) returns that module and leaves the collector as it was: no
    freeze of what the process allocated since, and no walk of the frozen objects to decide."""
    out = run_python(
        """
        import gc, json, sys
        from modelshelf.deferred_imports import import_late
        gc.collect(); gc.freeze()
        kept = [[i] for i in range(50_000)]  # allocated after the freeze: still collectable
        module = import_late("json")
        print(module is sys.modules["json"], len(gc.get_objects()) > 50_000)
        """
    )
    assert out.split() == ["True", "True"]


#: Run in a fresh interpreter: prints what the collector did around ``body`` (indented code
#: that may read ``allocate()``): the automatic passes within, and the state after.
LONG_LIVED = """
import gc, json, weakref
from modelshelf.deferred_imports import long_lived_imports
passes = []
gc.callbacks.append(lambda phase, info: phase == "start" and passes.append(info["generation"]))
thresholds = gc.get_threshold()
class Node:
    pass
garbage = None
def allocate():
    global garbage
    kept = [[i] for i in range(100_000)]  # a default collector runs ~140 passes over these
    node = Node(); node.cycle = node  # garbage only the collector frees
    garbage = weakref.ref(node)
    return kept
frozen_before = gc.get_freeze_count()
error = None
try:
    with long_lived_imports():
        passes.clear()
{body}
        within = list(passes)
except RuntimeError as exc:
    error = str(exc)
print(json.dumps({{
    "within": within if error is None else list(passes), "error": error,
    "enabled": gc.isenabled(), "thresholds_kept": gc.get_threshold() == thresholds,
    "thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count() - frozen_before,
    "garbage_kept": garbage is not None and garbage() is not None,
}}))
"""


def long_lived(body: str) -> dict:
    code = LONG_LIVED.format(body=textwrap.indent(textwrap.dedent(body), " " * 8))
    return json.loads(run_python(code).strip().splitlines()[-1])


def test_long_lived_imports_pause_the_collector_then_collect_and_freeze():
    """Within: no automatic pass over what is allocated; after: the garbage is collected
    (not kept frozen), what lives is frozen, and the collector is as it was."""
    found = long_lived("kept = allocate()")
    assert found["within"] == []
    assert found["frozen"] >= 100_000 and not found["garbage_kept"]
    assert found["enabled"] and found["thresholds_kept"]


def test_long_lived_imports_collect_the_cyclic_garbage_a_load_makes_within():
    """A user's ``load()`` making millions of small cycles keeps its memory bounded within the
    pause: with no pass at all (the first threshold 0) this load grew by ~1.5 GB, where a
    default collector keeps it near nothing."""
    out = run_python(
        """
        import resource
        from modelshelf.deferred_imports import long_lived_imports

        class Node:
            __slots__ = ("other", "pad")

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with long_lived_imports():
            for i in range(3_000_000):
                a, b = Node(), Node()
                a.other, b.other, a.pad, b.pad = b, a, [i] * 20, {"k": i}
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    assert int(out.split()[-1]) < 300  # MB of peak growth; 1,500 without passes


def test_long_lived_imports_keep_a_collector_turned_off_within():
    """Code within that turns the collector off (a model's ``load_context``) finds it off
    after: the pause does not end with ``gc.enable()``."""
    found = long_lived("kept = allocate()\ngc.disable()")
    assert found["within"] == [] and found["enabled"] is False and found["thresholds_kept"]


def test_long_lived_imports_keep_thresholds_set_within():
    found = long_lived("kept = allocate()\ngc.set_threshold(5_000, 20, 30)")
    assert found["thresholds"] == [5_000, 20, 30] and found["enabled"]


def test_long_lived_imports_that_fail_freeze_nothing():
    """A failed load keeps nothing: the collector resumes as it was and nothing is frozen."""
    found = long_lived("kept = allocate()\nraise RuntimeError('load failed')")
    assert found["error"] == "load failed" and found["frozen"] == 0
    assert found["enabled"] and found["thresholds_kept"]


def test_long_lived_imports_leave_a_collector_turned_off_before_alone():
    found = long_lived("gc.disable()\nkept = allocate()")  # the pause saw it on: kept off
    assert found["enabled"] is False
    out = run_python(
        """
        import gc
        from modelshelf.deferred_imports import long_lived_imports
        gc.disable()
        with long_lived_imports():
            kept = [[i] for i in range(10_000)]
        print(gc.isenabled(), gc.get_freeze_count(), gc.get_threshold()[0])
        """
    )
    assert out.split() == ["False", "0", "700"]


def test_scipy_s_optimizers_wait_for_a_fit_and_fitting_gives_the_same_model():
    """Fitted models predict without SciPy's optimize, integrate, interpolate and spatial
    modules, which scikit-learn imports at the top for fitting and scoring; a fit that uses
    them (LogisticRegression's lbfgs: ``optimize.minimize``) imports them then and finds the
    model it finds without the deferral."""
    code = """
        import json, sys
        import numpy as np
        from modelshelf import deferred_imports
        with deferred_imports.deferring({active}):
            from sklearn.ensemble import RandomForestClassifier
            from sklearn.linear_model import LogisticRegression
            from sklearn.metrics import pairwise_distances
        X = np.random.default_rng(0).normal(size=(200, 4))
        y = X[:, 0] + X[:, 1] > 0
        forest = RandomForestClassifier(10, random_state=0).fit(X, y)
        forest.predict_proba(X[:5])
        before = sorted(m for m in ("scipy.optimize", "scipy.integrate", "scipy.interpolate",
                                    "scipy.spatial") if m in sys.modules)
        coef = LogisticRegression().fit(X, y).coef_.tolist()
        distances = pairwise_distances(X[:3], metric="cityblock").tolist()
        print(json.dumps([before, coef, distances, "scipy.optimize" in sys.modules]))
    """
    deferred = json.loads(run_python(code.format(active=True)))
    as_written = json.loads(run_python(code.format(active=False)))
    assert deferred[0] == []
    assert as_written[0] != []
    assert deferred[1:] == as_written[1:] and deferred[3] is True


def test_concurrent_first_uses_of_a_stand_in_wait_for_one_import():
    """Sixteen threads reading a deferred module at once (a worker's first concurrent requests):
    those that find it half-imported by another wait for it, as the import statement does
    (they raised AttributeError / ImportError from the half-initialized scipy.spatial). A
    race: without the wait, 3 of 5 interpreters failed; three make a miss unlikely."""
    for _ in range(3):
        out = run_python(
            """
            import json, threading
            import numpy as np
            from modelshelf import deferred_imports
            with deferred_imports.deferring(True):
                from sklearn.metrics import pairwise_distances
            X = np.arange(12.0).reshape(4, 3)
            found = []
            def call():
                try:
                    found.append(float(pairwise_distances(X, X, metric="cityblock").sum()))
                except Exception as exc:
                    found.append(f"{type(exc).__name__}: {exc}")
            threads = [threading.Thread(target=call) for _ in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            from scipy.spatial.distance import cdist
            print(json.dumps([found, float(cdist(X, X, "cityblock").sum())]))
            """
        )
        found, expected = json.loads(out.strip().splitlines()[-1])
        assert found == [expected] * 16


def test_concurrent_first_imports_of_pandas_by_requests_wait_for_one_import():
    """``pandas_module`` at a worker's first DataFrame requests, on several threads at once:
    each gets pandas whole (a half-imported one had no ``DataFrame``: 13-15 of 16 threads
    failed in every run)."""
    out = run_python(
        """
        import threading
        from modelshelf.inputs import pandas_module
        found = []
        def call():
            try:
                found.append(len(pandas_module().DataFrame({"a": [1, 2]})))
            except Exception as exc:
                found.append(f"{type(exc).__name__}: {exc}")
        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(found)
        """
    )
    assert out.strip() == str([2] * 16)
