"""Small requests answered by walking the trees in Python, with XGBoost's float32 arithmetic.

Why: inside a running server one call into XGBoost's predictor costs 250-320 µs for a single
row (it is ~70 µs in a tight loop: its code and buffers have left the CPU caches while the HTTP
stack ran), while walking 60 small trees in Python takes ~30 µs. So requests with few rows
through few, shallow trees are walked here, and everything else goes to XGBoost.

Exactness: the walk starts from the model's base margin (``base_score`` through the objective's
probability-to-margin function, in float32 with the C library's ``logf``), adds each tree's leaf
to a float32 margin in tree order, and transforms in float32 with the C library's ``expf``, as
XGBoost does; each float32 step is the same operation in double, rounded to float32 by storing it
in an ``array('f')`` -- the correctly rounded float32 result, since a double holds more than
twice float32's precision. It is still used only where it equals XGBoost's own prediction, bit
for bit, on probe rows at load (thresholds, ties, missing values); categorical splits,
multi-output trees, DART, a ``missing`` other than NaN or an objective not in ``_TRANSFORMS``
keep XGBoost's call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
from array import array
from collections.abc import Callable

import numpy as np
import xgboost as xgb

#: Node visits per request (rows x the trees' mean depth, summed) up to which the walk is used.
MAX_VISITS = 1000

Tree = tuple[list[int], list[int], list[int], list[float], list[int]]


def _libm_float(name: str) -> Callable[[float], float] | None:
    """The C library's float32 ``expf`` / ``logf``, which XGBoost calls (they are not always
    the correctly rounded result that ``math.exp`` rounded to float32 gives)."""
    try:
        found = getattr(ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6"), name)
    except (OSError, AttributeError):
        return None
    found.restype, found.argtypes = ctypes.c_float, [ctypes.c_float]
    return found


EXPF = _libm_float("expf")
LOGF = _libm_float("logf")


class TreeWalk:
    """Margins and values of rows of float32-exact floats, for one booster."""

    def __init__(self, trees: list[Tree], groups: list[int], num_group: int, objective: str):
        self.trees = list(zip(groups, trees, strict=True))
        self.num_group = num_group
        self.transform = _TRANSFORMS[objective]
        self.base = [0.0] * num_group
        self.visits_per_row = sum(_mean_depth(t[0], t[1]) for t in trees) or 1.0

    def margins(self, row: list[float]) -> array:
        out = array("f", self.base)
        for group, (left, right, feature, threshold, default_left) in self.trees:
            node = 0
            while left[node] != -1:
                x = row[feature[node]]
                if x < threshold[node]:
                    node = left[node]
                elif x == x:  # not NaN
                    node = right[node]
                else:  # missing: the branch the tree learned for it
                    node = left[node] if default_left[node] else right[node]
            out[group] += threshold[node]  # a leaf keeps its value there
        return out

    def predictor(self, predict_type: str) -> Callable[[np.ndarray], np.ndarray]:
        """``predict_type`` (``value`` or ``margin``) of a 2-D array, shaped as XGBoost's."""
        transform = self.transform if predict_type == "value" else _margin
        one_column = self.num_group == 1 or (predict_type == "value" and transform is _argmax)

        def predict(X: np.ndarray) -> np.ndarray:
            found = [transform(self.margins(list(array("f", row)))) for row in X.tolist()]
            out = np.array(found, dtype=np.float32)
            return out.reshape(-1) if one_column else out

        return predict


def tree_walk(booster: xgb.Booster, objective: str, missing: float) -> TreeWalk | None:
    """The walk for ``booster`` when its model is one this module covers, else ``None``."""
    if objective not in _TRANSFORMS or not math.isnan(missing):
        return None
    learner = json.loads(booster.save_raw("json"))["learner"]
    booster_model = learner["gradient_booster"]
    if booster_model.get("name") != "gbtree":
        return None
    model = booster_model["model"]
    params = learner["learner_model_param"]
    if int(params.get("num_target", 1)) != 1 or EXPF is None or LOGF is None:
        return None
    trees: list[Tree] = []
    for tree in model["trees"]:
        if any(tree.get("split_type", [])) or tree.get("categories"):
            return None
        trees.append(
            (
                tree["left_children"],
                tree["right_children"],
                tree["split_indices"],
                np.asarray(tree["split_conditions"], dtype=np.float32).tolist(),
                tree["default_left"],
            )
        )
    num_group = max(1, int(params.get("num_class", 0)))
    walk = TreeWalk(trees, [int(g) for g in model["tree_info"]], num_group, objective)
    walk.base = base_margins(str(params.get("base_score", "0")), objective, num_group)
    return walk


def base_margins(base_score: str, objective: str, num_group: int) -> list[float]:
    """The margin every row starts from: the model's ``base_score`` (a number or, since
    XGBoost 3, a list per class) in float32, through the objective's probability-to-margin
    function in float32 arithmetic, as XGBoost computes it."""
    scores = array("f", [float(v) for v in base_score.strip("[]").split(",")])
    if len(scores) == 1:
        scores = array("f", list(scores) * num_group)
    if objective in ("binary:logistic", "reg:logistic"):
        odds = array("f", [1.0 / b for b in scores])
        odds = array("f", [o - 1.0 for o in odds])
        return array("f", [-LOGF(o) for o in odds]).tolist()  # type: ignore[misc]
    if objective == "count:poisson":
        return array("f", [LOGF(b) for b in scores]).tolist()  # type: ignore[misc]
    return scores.tolist()


def verified_tree_walk(
    booster: xgb.Booster, objective: str, missing: float, n_features: int
) -> tuple[TreeWalk | None, str]:
    """The walk when it equals ``booster.inplace_predict`` on probe rows for values and margins,
    else ``None``; and what was found, for the log. Never raises."""
    try:  # on one thread: the server loads with one (modelshelf.openmp)
        return _verified(booster, objective, missing, n_features)
    except Exception as exc:  # any surprise: keep XGBoost's call
        return None, f"XGBoost's own predictor (tree walk failed: {type(exc).__name__}: {exc})"


def _verified(
    booster: xgb.Booster, objective: str, missing: float, n_features: int
) -> tuple[TreeWalk | None, str]:
    walk = tree_walk(booster, objective, missing)
    if walk is None:
        return None, "XGBoost's own predictor (a model the tree walk does not cover)"
    X = probe_rows(walk, n_features)
    for predict_type in ("margin", "value"):
        want = booster.inplace_predict(X, predict_type=predict_type)
        got = walk.predictor(predict_type)(X)
        if got.shape != want.shape or not np.array_equal(got, want, equal_nan=True):
            return None, f"XGBoost's own predictor (the tree walk's {predict_type} differs)"
    return walk, f"trees walked in Python for small requests (equal on {len(X)} probe rows)"


def probe_rows(walk: TreeWalk, n_features: int) -> np.ndarray:
    """Rows at, just below and just above the trees' thresholds, and with missing values."""
    rng = np.random.default_rng(20240601)
    thresholds: list[list[float]] = [[] for _ in range(n_features)]
    for _, (left, _right, feature, threshold, _default) in walk.trees:
        for node, child in enumerate(left):
            if child != -1:
                thresholds[feature[node]].append(threshold[node])
    columns = []
    for values in thresholds:
        seen = np.asarray(values or [0.0], dtype=np.float32)
        picks = rng.choice(seen, 96)
        nudge = rng.choice(np.array([-1, 0, 1], dtype=np.float32), 96)
        columns.append(picks + nudge * np.abs(picks) * np.float32(1e-6))
    X = np.column_stack(columns).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    return np.vstack([X, rng.standard_normal((32, n_features)).astype(np.float32) * 10])


def _mean_depth(left: list[int], right: list[int]) -> float:
    depth = [0] * len(left)
    leaves = []
    for node, child in enumerate(left):  # XGBoost numbers a child after its parent
        if child == -1:
            leaves.append(depth[node])
        else:
            depth[child] = depth[right[node]] = depth[node] + 1
    return sum(leaves) / len(leaves)


def _margin(margins: array) -> list[float]:
    return margins.tolist()


def _sigmoid(margins: array) -> list[float]:
    """XGBoost's float32 sigmoid: ``1 / (expf(min(-x, 88.7)) + 1)``."""
    out = array("f", [EXPF(min(-margins[0], _SIGMOID_CLAMP))])  # type: ignore[misc]
    out[0] += 1.0
    out[0] = 1.0 / out[0]
    return out.tolist()


def _softprob(margins: array) -> list[float]:
    top = max(margins)
    out = array("f", [m - top for m in margins])
    out = array("f", [EXPF(d) for d in out])  # type: ignore[misc]
    total = 0.0  # XGBoost sums the float32 exponentials in double
    for e in out:
        total += e
    divisor = array("f", [total])[0]
    return array("f", [e / divisor for e in out]).tolist()


def _argmax(margins: array) -> list[float]:
    return [float(max(range(len(margins)), key=margins.__getitem__))]


def _exp(margins: array) -> list[float]:
    return array("f", [EXPF(margins[0])]).tolist()  # type: ignore[misc]


_SIGMOID_CLAMP = float(array("f", [88.7])[0])

#: Objectives the walk covers, and how their margins become values.
_TRANSFORMS: dict[str, Callable[[array], list[float]]] = {
    "reg:squarederror": _margin,
    "reg:absoluteerror": _margin,
    "reg:pseudohubererror": _margin,
    "binary:logitraw": _margin,
    "binary:logistic": _sigmoid,
    "reg:logistic": _sigmoid,
    "multi:softprob": _softprob,
    "multi:softmax": _argmax,
    "count:poisson": _exp,
}
