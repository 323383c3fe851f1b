"""What a booster says of itself (objective, classes, rounds) and the names of its outputs.

Read from the booster's JSON configuration, never by predicting: this runs in seldon's parent
process, which must not start OpenMP before it forks its workers.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import xgboost as xgb

from modelshelf.metadata import array_spec


def describe_booster(booster: xgb.Booster) -> dict[str, Any]:
    """Objective, number of classes and targets, booster type, rounds, trees and feature
    types."""
    learner = json.loads(booster.save_config())["learner"]
    params = learner.get("learner_model_param", {})
    gradient_booster = learner.get("gradient_booster", {})
    trees = gradient_booster.get("gbtree", gradient_booster).get("gbtree_model_param", {})
    return {
        "objective": learner.get("objective", {}).get("name", "unknown"),
        "num_class": int(params.get("num_class", 0) or 0),
        "num_target": int(params.get("num_target", 1) or 1),
        "booster": gradient_booster.get("name", "unknown"),
        "rounds": booster.num_boosted_rounds(),
        "trees": int(trees.get("num_trees", 0) or 0),  # 0: no trees (gblinear)
        "feature_types": booster.feature_types,
        "num_features": booster.num_features(),
    }


def class_labels(
    estimator: Any, description: dict[str, Any], metadata: dict[str, Any] | None
) -> list[str]:
    """The ``XGBClassifier``'s ``classes_``, else names from ``metadata.yaml``'s first output,
    else ``class_0…``."""
    count = description["num_class"] or (2 if description["objective"].startswith("binary:") else 0)
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        return [str(c) for c in classes]
    try:
        names = metadata["outputs"][0]["schema"]["names"]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        names = None
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return [f"class_{i}" for i in range(count)]


def default_feature_names(n_features: int) -> list[str]:
    """XGBoost's own names for unnamed features: ``f0, f1…``."""
    return [f"f{i}" for i in range(n_features)]


def output_spec(
    method: str, names: Sequence[str] | None, description: dict[str, Any]
) -> dict[str, Any]:
    """The metadata's output: SHAP values of a multi-class model are 3-D, leaves unnamed."""
    num_class = description["num_class"]
    if method == "predict_contribs" and num_class > 1:
        spec = array_spec(names, None)
        spec["schema"]["shape"] = [-1, num_class, description["num_features"] + 1]
        return spec
    if method == "predict_leaf":
        return array_spec(None, None)
    return array_spec(names, len(names) if names else None)


def trained_categories(booster: xgb.Booster) -> dict[str, list[Any] | None]:
    """Each categorical feature's categories, by name, in the order of the codes the model was
    trained with, as XGBoost (>= 3.1) stores them in the model (``get_categories``).

    Read from the model's own JSON (``learner.gradient_booster.model.cats``), the stable form
    XGBoost documents for them: ``Categories.to_arrow`` would need pyarrow, which the XGBoost
    image does not install. Empty when no feature is categorical, or when the model stores no
    categories (trained on codes, or saved by XGBoost < 3.1): its clients send codes. ``None``
    for a feature whose text is not ASCII: XGBoost 3.2 stores as many UTF-8 bytes as there are
    characters, so the text is cut short and its categories cannot be read back."""
    names = booster.feature_names
    types = booster.feature_types or []
    if "c" not in types or not names or booster.get_categories().empty():
        return {}
    gradient_booster = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    model = gradient_booster.get("model") or gradient_booster.get("gbtree", {}).get("model", {})
    encodings = model.get("cats", {}).get("enc", [])
    found: dict[str, list[Any] | None] = {}
    for name, kind, encoding in zip(names, types, encodings, strict=False):
        if kind != "c":
            continue
        if "offsets" not in encoding:  # numbers: as they are
            found[name] = list(encoding.get("values", []))
        elif all(0 <= value < 128 for value in encoding["values"]):  # ASCII text, by offsets
            text = bytes(encoding["values"]).decode("ascii")
            offsets = encoding["offsets"]
            found[name] = [text[a:b] for a, b in itertools.pairwise(offsets)]
        else:
            found[name] = None
    return found
