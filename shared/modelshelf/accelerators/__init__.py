"""Accelerators: a faster call for a model's method, behind one door.

``accelerate(model, method, reference)`` returns a call that answers exactly what ``reference``
(the framework's own callable for ``method``) answers, or ``None``. The base class
``ModelServer`` asks once, at load, for the method it serves when ``fast_path`` is on
(``FAST_PATH_ENV`` or the ``fast_path`` parameter of every server); framework modules never
import this package. Every candidate passes ``verify`` first: on probe rows, adversarial ones
included (extremes, near-overflow, subnormals, ±inf, NaN), it must give bit-identical outputs
and refuse exactly the inputs the reference refuses, or it is not used.

An accelerator keeps its place here only while the realistic bench (``bench/realistic.py``,
``modelshelf serve`` with the fast path on vs off, same run) shows it is worth at least 1.5x for
a model of that set (README "Fast path" has the figures). ``sklearn_linear`` (linear models'
product without scikit-learn's input checks) is judged on the set's bare LogisticRegression (30
features, 3 classes), which joined it for that: 1.86x req/s / 2.18x CPU for one row in the
committed realistic run.
``sklearn_column_transformer`` (a one-hot pipeline's ColumnTransformer matrix built from the
frame) is judged on the set's one-hot pipeline: 5.5-9.0x req/s / 8.1-8.7x server CPU for one
Seldon row, 3.7-3.8x / 4.3-4.5x for 100 rows (``bench/profiles/pipeline.md``, on vs off in one run).

Private APIs, each behind a load-time check with a fallback (the framework's own call):

* ``sklearn.ensemble._forest.ForestClassifier`` / ``ForestRegressor`` (the forests' bases) and
  their ``_validate_X_predict``, in ``sklearn_forest``. Checked at load: the import, the method
  present, the model's class keeping scikit-learn's own method, then ``verify``; else no
  candidate.
* HistGradientBoosting's ``_predictors`` (their ``nodes`` tables: ``left``, ``right``,
  ``feature_idx``, ``num_threshold``, ``missing_go_to_left``, ``is_leaf``, ``is_categorical``,
  ``value``, ``depth``), ``_baseline_prediction``, ``_loss`` and ``_preprocess_X``, in
  ``sklearn_hist_gradient_boosting``. Checked at load: the class keeps scikit-learn's own
  method, no categorical feature, the fields present (else the build fails: no candidate),
  then ``verify`` with rows at every threshold.
* ``lightgbm.basic._LIB`` (the loaded ``lib_lightgbm``, whose public C API
  ``LGBM_BoosterPredictForMatSingleRowFastInit`` / ``…SingleRowFast`` / ``LGBM_FastConfigFree``
  it calls) and ``Booster._handle``, in ``lightgbm_booster``. Checked at load: the model is a
  ``lightgbm.Booster`` or an ``LGBMClassifier`` / ``LGBMRegressor`` keeping LightGBM's own
  method (built-in objective, no prediction parameters), without pandas categories, both
  attributes present and the ``FastConfig`` made (else no candidate), then ``verify``.
* scikit-learn's ``LinearModel._decision_function``, in ``sklearn_linear``: compared by
  identity only (with scikit-learn's own, the regressors' ``predict`` is the plain product);
  another one, or none, means no candidate; then ``verify``.
* pandas' ``DataFrame._get_column_array`` (a frame's stored column arrays) and scikit-learn's
  ``_sklearn_output_config`` (the ``set_output`` choice, read only to refuse a configured
  container), in ``sklearn_column_transformer``. Checked at load: without the pandas method each
  column is read as its Series (public); the built matrix compared bit for bit with
  ``ColumnTransformer.transform`` on the probe frames (else no candidate), then ``verify``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

from modelshelf.accelerators.verify import Candidate, verify

__all__ = ["FAST_PATH_ENV", "Accelerated", "Candidate", "accelerate", "verify"]

#: ``false`` turns every accelerator off (the ``fast_path`` parameter wins over it).
FAST_PATH_ENV = "MODELSHELF_FAST_PATH"

#: The accelerator modules for a model, by the top-level package of its class; each has
#: ``candidate(model, method, reference) -> Candidate | None`` (the first candidate is the one
#: verified). Imported only for their framework's models.
ACCELERATORS: dict[str, tuple[str, ...]] = {
    "lightgbm": ("modelshelf.accelerators.lightgbm_booster",),
    "sklearn": (
        "modelshelf.accelerators.sklearn_column_transformer",
        "modelshelf.accelerators.sklearn_forest",
        "modelshelf.accelerators.sklearn_hist_gradient_boosting",
        "modelshelf.accelerators.sklearn_linear",
    ),
}

logger = logging.getLogger(__name__)


class Accelerated:
    """An accelerator's verified call; ``description`` says which and how it was checked (the
    metadata's ``custom["fast path"]``)."""

    __slots__ = ("call", "description")

    def __init__(self, call: Callable[[Any], Any], description: str) -> None:
        self.call = call
        self.description = description

    def __call__(self, X: Any) -> Any:
        return self.call(X)


def accelerate(
    model: Any, method: str, reference: Callable[[Any], Any], log: logging.Logger = logger
) -> Accelerated | None:
    """A verified faster call for ``model``'s ``method``, equal to ``reference``, or ``None``
    (the reason goes to ``log``: a WARNING when a candidate was built but refused). Never
    raises: any failure keeps the reference."""
    kind = type(model).__name__
    found = None
    try:
        for module_name in ACCELERATORS.get(type(model).__module__.partition(".")[0], ()):
            found = importlib.import_module(module_name).candidate(model, method, reference)
            if found is not None:
                break
    except Exception as exc:  # an accelerator that cannot build keeps the framework's call
        log.warning("%s.%s: the framework's own call (accelerator failed: %s: %s)",
                    kind, method, type(exc).__name__, exc)  # fmt: skip
        return None
    if found is None:
        log.info("%s.%s: the framework's own call (no accelerator for it)", kind, method)
        return None
    difference = verify(found, reference)
    if difference is not None:
        log.warning("%s.%s: the framework's own call (%s refused: %s)",
                    kind, method, found.name, difference)  # fmt: skip
        return None
    description = f"{found.name}, bit-identical on {found.rows} probe rows"
    log.info("%s.%s: %s", kind, method, description)
    return Accelerated(found.call, description)


def fast_path_default() -> str:
    """``FAST_PATH_ENV``'s value, ``true`` when unset."""
    return os.environ.get(FAST_PATH_ENV, "true")
