"""The linear-model accelerator on real scikit-learn models: bit-identical to their own methods
on every input form (float64 / float32 / int, 1 to 1,000 rows, other memory layouts, overflowing
products), every refusal scikit-learn's own, offered only for scikit-learn's own methods, and a
real ``modelshelf serve`` process serving it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    RidgeCV,
    SGDClassifier,
)

import models
from microservice import SERVERS, seldon_parameters
from modelshelf.accelerators import Accelerated, accelerate
from modelshelf.accelerators.sklearn_linear import candidate
from modelshelf.accelerators.verify import Candidate, adversarial_rows, same_output, verify
from modelshelf.errors import BadRequestError
from modelshelf.frameworks.sklearn import SKLearnServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from frontends import MODELSHELF, Launch, running

WIDTH = 30
CLASSIFIED = {
    classes: make_classification(600, WIDTH, n_informative=10, n_classes=classes, random_state=0)
    for classes in (2, 3, 9)
}
REGRESSED = make_regression(400, WIDTH, n_targets=1, random_state=0)
TWO_TARGETS = make_regression(400, WIDTH, n_targets=2, random_state=0)
NAMES = np.array(["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis"])


def logistic(classes: int, **params: object) -> LogisticRegression:
    X, y = CLASSIFIED[classes]
    return LogisticRegression(max_iter=300, **params).fit(X, NAMES[y])


def requests() -> list[np.ndarray]:
    """Input forms a client's rows arrive in, served or handed to scikit-learn."""
    rng = np.random.default_rng(11)
    big = rng.standard_normal((1000, WIDTH)) * 3
    found = [big[:1].copy(), big[:7].copy(), big, big * 1e150, big.astype(np.float32)]
    found += [np.asfortranarray(big[:50]), big[::3], (big * 10).astype(np.int64)]
    return found + adversarial_rows(WIDTH)[:12]


def outcome(call, X):
    try:
        return "ok", call(X)
    except Exception as exc:
        return type(exc), str(exc)


def assert_same(model, method: str, fast, X) -> None:
    with np.errstate(all="ignore"):  # overflowing products warn on both sides alike
        got, want = outcome(fast, X), outcome(getattr(model, method), X)
    if want[0] == "ok":
        assert got[0] == "ok", got
        assert same_output(got[1], want[1]) is None, same_output(got[1], want[1])
    else:
        assert got == want


CASES = [
    (logistic(3), "predict_proba"),
    (logistic(3), "predict"),
    (logistic(3), "decision_function"),
    (logistic(2), "predict_proba"),
    (logistic(2), "predict"),
    (logistic(2), "decision_function"),
    (logistic(9), "predict_proba"),  # 8 classes and more: scikit-learn's softmax itself
    (logistic(3, fit_intercept=False), "predict_proba"),
    (LogisticRegression(solver="saga", max_iter=50).fit(
        CLASSIFIED[3][0].astype(np.float32), CLASSIFIED[3][1]), "predict_proba"),
    (LinearRegression().fit(*REGRESSED), "predict"),
    (Ridge().fit(*REGRESSED), "predict"),
    (RidgeCV().fit(*TWO_TARGETS), "predict"),
    (Lasso().fit(*TWO_TARGETS), "predict"),
    (ElasticNet().fit(*REGRESSED), "predict"),
    (LinearRegression(fit_intercept=False).fit(
        REGRESSED[0].astype(np.float32), REGRESSED[1].astype(np.float32)), "predict"),
    (SGDClassifier(random_state=0).fit(*CLASSIFIED[3]), "decision_function"),
    (RidgeClassifier().fit(*CLASSIFIED[3]), "decision_function"),
]  # fmt: skip
IDS = [f"{type(m).__name__}-{getattr(m, 'classes_', [0]).__len__()}-{meth}" for m, meth in CASES]


@pytest.mark.parametrize(("model", "method"), CASES, ids=IDS)
def test_bit_identical_to_scikit_learn_on_every_input_form(model, method):
    fast = accelerate(model, method, getattr(model, method))
    assert isinstance(fast, Accelerated)
    assert "input checks" in fast.description
    for X in requests():
        assert_same(model, method, fast, X)


@pytest.mark.parametrize("method", ["predict_proba", "predict", "decision_function"])
def test_what_scikit_learn_refuses_is_refused_as_it_refuses_it(method):
    model = logistic(3)
    fast = accelerate(model, method, getattr(model, method))
    row = np.ones((1, WIDTH))
    nan, inf = row.copy(), row.copy()
    nan[0, 3], inf[0, 5] = np.nan, -np.inf
    refused = [
        nan,
        inf,
        nan.astype(np.float32),
        np.ones((2, WIDTH - 1)),
        np.ones((0, WIDTH)),
        np.ones(WIDTH),
        np.full((1, WIDTH), "a"),
        np.ones((1, WIDTH), dtype=object),
        sp.csr_matrix(row),
        pd.DataFrame(row, columns=[f"f{i}" for i in range(WIDTH)]),
        [[1.0] * WIDTH],
    ]
    for X in refused:
        assert_same(model, method, fast, X)
    for X in refused[:5]:
        with pytest.raises(ValueError):
            fast(X)


def test_only_scikit_learn_s_own_methods_are_accelerated():
    class Calibrated(LogisticRegression):
        def predict_proba(self, X):
            return super().predict_proba(X) ** 2

    class Shifted(LogisticRegression):
        def decision_function(self, X):
            return super().decision_function(X) + 1

    X, y = CLASSIFIED[3]
    calibrated, shifted = Calibrated(max_iter=300).fit(X, y), Shifted(max_iter=300).fit(X, y)
    assert candidate(calibrated, "predict_proba", calibrated.predict_proba) is None
    assert candidate(calibrated, "predict", calibrated.predict) is not None  # its own predict
    for method in ("predict_proba", "predict", "decision_function"):
        assert candidate(shifted, method, getattr(shifted, method)) is None

    class Clipped(Ridge):
        def predict(self, X):
            return np.clip(super().predict(X), 0, None)

    clipped = Clipped().fit(*REGRESSED)
    assert candidate(clipped, "predict", clipped.predict) is None
    ridge = RidgeClassifier().fit(X, y)  # its predict is its own (multilabel), not the mixin's
    assert accelerate(ridge, "predict", ridge.predict) is None
    sparse = logistic(3)
    sparse.sparsify()
    assert accelerate(sparse, "predict_proba", sparse.predict_proba) is None
    named = LogisticRegression(max_iter=300).fit(pd.DataFrame(X).add_prefix("f"), y)
    assert accelerate(named, "predict_proba", named.predict_proba) is None


def test_served_with_the_fast_path_and_without(tmp_path):
    model = logistic(3)
    folder = models.save(model, tmp_path / "lr")
    on = SKLearnServer(str(folder))
    on.load()
    assert isinstance(on.method.call, Accelerated)
    assert "input checks, bit-identical" in on.init_metadata()["custom"]["fast path"]
    off = SKLearnServer(str(folder), fast_path=False)  # type: ignore[call-arg]
    off.load()
    assert off.method.call == off.model.predict_proba
    for X in requests()[:4]:
        np.testing.assert_array_equal(on.predict(X, []), model.predict_proba(X))
        np.testing.assert_array_equal(off.predict(X, []), model.predict_proba(X))
    with pytest.raises(BadRequestError, match="NaN"):
        on.predict(np.full((1, WIDTH), np.nan), [])


@pytest.mark.parametrize("fast_path", ["true", "false"])
def test_modelshelf_serve_answers_scikit_learn_s_numbers(tmp_path, fast_path):
    model = logistic(3)
    folder = models.save(model, tmp_path / "lr")
    launch = Launch("SKLearnServer", SERVERS / "sklearnserver", seldon_parameters(model_uri=folder))
    with running(launch, [MODELSHELF], env={"MODELSHELF_FAST_PATH": fast_path}) as (service,):
        said = service.get("/api/v1.0/metadata").json()["custom"]["fast path"]
        assert ("input checks" in said) if fast_path == "true" else said.startswith("off")
        for X in requests()[:3]:
            answer = service.post("/api/v1.0/predictions", {"data": {"ndarray": X.tolist()}})
            assert answer.status_code == 200, answer.text
            np.testing.assert_array_equal(answer.json()["data"]["ndarray"], model.predict_proba(X))
        short = service.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0]]}})
        assert short.status_code == 400, short.text


@pytest.mark.parametrize("classes", [3, 5, 7])
def test_rows_scoring_nan_and_inf_get_scikit_learn_s_nan_signs(classes):
    """Rows scoring NaN (sign bit set, as x86 makes inf - inf) in some classes and +inf in
    another: which NaN numpy's row ``max`` keeps depends on its SIMD path (for 5 classes a
    positive one, not the row's first), so such rows get scikit-learn's own softmax."""
    X = np.random.default_rng(1).standard_normal((300, 2))
    model = LogisticRegression(max_iter=300).fit(X, np.arange(300) % classes)
    model.coef_ = np.full((classes, 2), 2.0)
    negative_nan = np.array([0xFFF8000000000000], dtype=np.uint64).view(np.float64)[0]
    model.intercept_ = np.array([negative_nan] * (classes - 1) + [0.0])
    fast = accelerate(model, "predict_proba", model.predict_proba)
    assert isinstance(fast, Accelerated)
    rows = np.array([[1e308, 1e308], [1.0, 2.0], [-1e308, -1e308], [0.5, -0.25]])
    for X in (rows, rows[:1].copy(), rows[1:2].copy()):
        assert_same(model, "predict_proba", fast, X)


def test_random_models_and_rows_with_overflowing_products():
    """Seeded fuzzing: 2-7 classes, 1-39 features, coefficients scaled up to 1e300 (scores of
    ±inf and NaN), rows at scales up to 1e308, float64 and float32, 1 to 1,000 rows."""
    rng = np.random.default_rng(123)
    for _ in range(24):
        width, classes = int(rng.integers(1, 40)), int(rng.integers(2, 8))
        X = rng.standard_normal((200, width))
        model = LogisticRegression(max_iter=100).fit(X, rng.integers(0, classes, 200))
        model.coef_ = model.coef_ * 10 ** rng.uniform(0, 300)
        for method in ("predict_proba", "predict", "decision_function"):
            fast = accelerate(model, method, getattr(model, method))
            assert isinstance(fast, Accelerated)
            for _ in range(4):
                rows = int(rng.choice([1, 2, 5, 16, 1000]))
                scale = 10 ** rng.uniform(-3, 308)
                A = rng.standard_normal((rows, width)) * scale
                assert_same(model, method, fast, A if rng.integers(3) else A.astype(np.float32))


def test_the_load_time_check_refuses_a_softmax_summed_in_another_order():
    """The accelerator's exactness leans on numpy summing fewer than 8 values left to right; a
    numpy that summed otherwise must be caught at load. On the accelerator's own probes,
    ``verify`` passes scikit-learn's softmax written out (sum left to right) and refuses the
    same steps with the row sum taken right to left."""
    model = logistic(3)
    offered = candidate(model, "predict_proba", model.predict_proba)
    assert offered is not None

    def softmax_summed(order: list[int]):
        def call(X):
            if not (type(X) is np.ndarray and X.dtype.kind == "f" and np.isfinite(X).all()):
                return model.predict_proba(X)
            found = model.decision_function(X)
            found -= found.max(axis=1)[:, None]
            np.exp(found, out=found)
            total = found[:, order[0]] + found[:, order[1]]
            for j in order[2:]:
                total += found[:, j]
            found /= total[:, None]
            return found

        return call

    left_to_right = Candidate(offered.name, softmax_summed([0, 1, 2]), offered.probes)
    right_to_left = Candidate(offered.name, softmax_summed([2, 1, 0]), offered.probes)
    assert verify(left_to_right, model.predict_proba) is None
    refused = verify(right_to_left, model.predict_proba)
    assert refused is not None and "values differ" in refused, refused
