"""The one verifier against real scikit-learn models: it refuses accelerators that are close but
not exact -- the defects the removed closed forms had -- and accepts an exact one."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.special import expit, log_expit
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelshelf.accelerators import accelerate
from modelshelf.accelerators.verify import Candidate, adversarial_rows, verify

RNG = np.random.default_rng(3)
TRAIN_X = RNG.standard_normal((200, 4)) * [1, 10, 0.1, 100]
BINARY_Y = (TRAIN_X[:, 0] + TRAIN_X[:, 1] / 10 > 0).astype(int)


@pytest.fixture(scope="module")
def logistic() -> LogisticRegression:
    return LogisticRegression().fit(TRAIN_X, BINARY_Y)


def scores(model: LogisticRegression, X: np.ndarray) -> np.ndarray:
    return (np.asarray(X, dtype=np.float64) @ model.coef_.T + model.intercept_).ravel()


def test_an_exact_candidate_passes(logistic):
    candidate = Candidate("same call", logistic.predict_proba, adversarial_rows(4))
    assert verify(candidate, logistic.predict_proba) is None


def test_finite_log_probabilities_where_scikit_learn_gives_minus_inf_are_refused(logistic):
    """scipy's ``log_expit`` is the better arithmetic, but scikit-learn's ``predict_log_proba``
    is ``log(predict_proba)``: -inf where the probability underflowed (the removed plain-Python
    form answered finite values there). Not bit-identical: refused."""

    def log_proba(X: np.ndarray) -> np.ndarray:
        found = logistic.predict_log_proba(X)  # exact, except where it is -inf:
        s = scores(logistic, X)
        better = np.column_stack((log_expit(-s), log_expit(s)))
        return np.where(np.isneginf(found), better, found)

    candidate = Candidate("log_expit", log_proba, adversarial_rows(4))
    found = verify(candidate, logistic.predict_log_proba)
    assert found is not None and "values differ" in found and "-inf" in found


def test_a_result_where_scikit_learn_refuses_the_input_is_refused():
    """A scaler pipeline's closed form without the overflow check: near 1e308 the scaled values
    become inf, which scikit-learn's next step refuses (a 400); the candidate answers."""
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(TRAIN_X, BINARY_Y)
    scaler, lr = model[0], model[1]

    def closed_form(X: np.ndarray) -> np.ndarray:
        if not np.isfinite(X).all():
            raise ValueError("Input X contains infinity or NaN")
        p = expit(scores(lr, (X - scaler.mean_) / scaler.scale_))
        return np.column_stack((1 - p, p))

    found = verify(Candidate("closed form", closed_form, adversarial_rows(4)), model.predict_proba)
    assert found is not None
    assert "answers a result where the framework answers 400" in found


def test_one_ulp_off_and_the_wrong_zero_are_refused(logistic):
    def ulp_off(X: np.ndarray) -> np.ndarray:
        found = logistic.predict_proba(X)
        return np.nextafter(found, 2.0)

    assert "values differ" in verify(
        Candidate("ulp", ulp_off, adversarial_rows(4)), logistic.predict_proba
    )

    def negative_zero(X: np.ndarray) -> np.ndarray:
        return -np.zeros(len(X))

    found = verify(Candidate("zero", negative_zero, [np.ones((2, 4))]), lambda X: np.zeros(len(X)))
    assert found is not None and "signs of zero" in found


def test_refusing_what_the_framework_accepts_is_refused(logistic):
    def refuses_large(X: np.ndarray) -> np.ndarray:
        if np.abs(X).max() > 1e300:
            raise ValueError("too large")
        return logistic.predict(X)

    # the probes hold finite extremes (1.8e308) that scikit-learn answers: caught by them too
    found = verify(Candidate("picky", refuses_large, adversarial_rows(4)), logistic.predict)
    assert found is not None and "answers 400" in found, found
    finite_extremes = [np.full((1, 4), 1e308)]
    found = verify(Candidate("picky", refuses_large, finite_extremes), logistic.predict)
    assert "answers 400 (ValueError: too large) where the framework answers a result" in found


def test_the_probes_hold_the_adversarial_values():
    probes = np.vstack([p.astype(np.float64) for p in adversarial_rows(3)])
    for value in (np.inf, -np.inf, 1.7976931348623157e308, 3.5e38, 5e-324):
        assert (probes == value).any(), value
    assert np.isnan(probes).any()
    assert any(p.dtype == np.float32 for p in adversarial_rows(3))
    assert any(p.dtype == np.int64 for p in adversarial_rows(3))
    assert any(len(p) == 1 for p in adversarial_rows(3))


def test_accelerate_offers_nothing_for_a_model_without_an_accelerator(caplog):
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(TRAIN_X, BINARY_Y)
    with caplog.at_level(logging.INFO, logger="modelshelf.accelerators"):
        assert accelerate(model, "predict_proba", model.predict_proba) is None
    assert "no accelerator" in caplog.text


class CountedCalls:
    """A framework call that records what each call answered: a result or a refusal."""

    def __init__(self, call) -> None:
        self.call = call
        self.answers: list[tuple[int, str]] = []

    def __call__(self, X):
        try:
            found = self.call(X)
        except Exception as exc:
            self.answers.append((len(X), type(exc).__name__))
            raise
        self.answers.append((len(X), "ok"))
        return found

    @property
    def accepted(self) -> int:
        return sum(1 for _, kind in self.answers if kind == "ok")


def test_the_framework_answers_stacked_probes_in_few_calls():
    """Probes of one kind share the framework's calls; the ones it refuses (a forest refuses
    inf and values past float32) are still answered -- refused -- one probe at a time, so an
    exact candidate passes with far fewer accepted calls than probes."""
    forest = RandomForestClassifier(5, random_state=0).fit(TRAIN_X, BINARY_Y)
    probes = adversarial_rows(4)
    reference = CountedCalls(forest.predict_proba)
    assert verify(Candidate("same call", forest.predict_proba, probes), reference) is None
    with np.errstate(invalid="ignore"):
        refused = [p for p in probes if (np.abs(p) > np.finfo(np.float32).max).any()]
    assert len(refused) == 10  # the extremes, the mixed batch, 8 single rows
    for probe in refused:  # each refused probe got the framework's own refusal
        assert (len(probe), "ValueError") in reference.answers
    assert reference.accepted <= 10 < len(probes), reference.answers


def test_a_candidate_matching_only_the_stacked_answers_is_refused():
    """A framework whose answer for a row depends on the call's other rows (here: the number of
    rows) is answered one probe at a time: a candidate that reproduces its stacked answers but
    not its answers to each probe is refused."""
    probes = [np.full((n, 3), float(n)) for n in (1, 2, 4, 8, 16)]
    stacked_rows = sum(len(p) for p in probes)

    def reference(X: np.ndarray) -> np.ndarray:
        return X[:, 0] + len(X)

    def stacked(X: np.ndarray) -> np.ndarray:
        return X[:, 0] + stacked_rows

    found = verify(Candidate("stacked", stacked, probes), reference)
    assert found is not None and "values differ" in found
    assert verify(Candidate("same", reference, probes), reference) is None


def test_a_difference_from_a_stack_is_confirmed_against_the_probe_alone():
    """A framework whose rows differ in the last bit between a stack and a probe alone (as a
    BLAS product may) where the single-row and largest probes happen to agree: a candidate equal
    to the framework's own answer to each probe still passes."""
    probes = [np.full((n, 2), 0.1 * n) for n in (1, 3, 5, 7, 16)]

    def reference(X: np.ndarray) -> np.ndarray:
        found = X[:, 0] * 3.0
        return np.nextafter(found, np.inf) if len(X) not in (1, 16, 32) else found

    assert verify(Candidate("same", reference, probes), reference) is None


def test_probes_that_are_not_numbers_are_verified_too():
    """Object arrays of text stack like numbers (their order among the suspects aside), and a
    candidate that differs on one is refused."""
    probes = [np.array([["a"], ["bb"]], dtype=object), np.array([["ccc"]], dtype=object)] * 3

    def lengths(X: np.ndarray) -> np.ndarray:
        return np.array([len(value) for value in X[:, 0]])

    assert verify(Candidate("same", lengths, probes), lengths) is None
    off_by_one = Candidate("off", lambda X: lengths(X) + (X[0, 0] == "ccc"), probes)
    assert "values differ" in verify(off_by_one, lengths)


def test_a_framework_whose_answer_cannot_be_split_answers_each_probe_alone():
    """An answer that is not an array of one row per input row (here a list) cannot be cut into
    the probes' rows: after the one stacked call, every probe is called alone, and a candidate
    that differs on one probe is still refused."""
    probes = [np.full((n, 2), float(n)) for n in (1, 2, 3, 4, 5)]

    def first_column(X: np.ndarray) -> list[float]:
        return X[:, 0].tolist()

    reference = CountedCalls(first_column)
    assert verify(Candidate("same", first_column, probes), reference) is None
    assert reference.answers == [(15, "ok"), (1, "ok"), (2, "ok"), (3, "ok"), (4, "ok"), (5, "ok")]
    off = Candidate("off", lambda X: [v + (len(X) == 3) for v in first_column(X)], probes)
    assert "values differ" in verify(off, first_column)
