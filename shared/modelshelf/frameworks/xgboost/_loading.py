"""Which file in the model folder, in which format, and loading it into a ``Booster``.

Boosters saved as JSON / UBJSON (``model.json``, ``model.ubj``, ``model.bst``), and
scikit-learn-API models (``XGBClassifier`` / ``XGBRegressor``) pickled with joblib or pickle.
Every refusal says what the file is and what to do: re-save with another XGBoost, keep one
file, or serve a scikit-learn model with SKLearnServer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import xgboost as xgb

from modelshelf.errors import ModelLoadError, ModelNotFoundError
from modelshelf.frameworks.xgboost._saved_version import saved_version, xgboost_version
from modelshelf.model_files import find_model_file, load_pickled

BOOSTER_NAMES = ("model.json", "model.ubj", "model.bst")
PICKLE_NAMES = ("model.joblib", "model.pkl", "model.pickle")
MODEL_NAMES = BOOSTER_NAMES + PICKLE_NAMES
BOOSTER_SUFFIXES = (".json", ".ubj", ".bst")
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def model_path(model_dir: Path, model_file: str, uri: str) -> Path:
    """Exactly one model file (or ``model_file``); several conventional names are an error."""
    if model_dir.is_dir() and not model_file:
        present = [n for n in MODEL_NAMES if (model_dir / n).is_file()]
        if len(present) > 1:
            raise ModelNotFoundError(
                uri,
                f"several model files ({', '.join(present)}): keep one, or set the parameter "
                "model_file to the one to serve",
            )
    return find_model_file(
        model_dir, MODEL_NAMES, BOOSTER_SUFFIXES + PICKLE_SUFFIXES, model_file, uri=uri
    )


def is_pickle(path: Path) -> bool:
    return path.name.lower().endswith(PICKLE_SUFFIXES)


def load_booster(path: Path, uri: str) -> xgb.Booster:
    """A JSON / UBJSON booster file; the pre-1.0 binary format is refused with XGBoost's words."""
    booster = xgb.Booster()
    try:
        if path.suffix.lower() in (".json", ".ubj"):
            booster.load_model(str(path))
        else:  # model.bst: JSON or UBJSON by content (XGBoost would guess UBJSON and warn)
            with path.open("rb") as f:
                head = f.read(1)
            booster.load_model(bytearray(path.read_bytes()) if head == b"{" else str(path))
    except xgb.core.XGBoostError as exc:
        raise ModelLoadError(
            uri,
            f"XGBoost {xgb.__version__} cannot read {path.name}: {_first_lines(exc)}. "
            "If it was saved by another XGBoost version, re-save it with Booster.save_model to "
            "model.json or model.ubj using that version, or use an image with a matching XGBoost",
        ) from exc
    return booster


def load_estimator(path: Path, uri: str) -> tuple[Any, xgb.Booster]:
    """A pickled ``XGBModel`` and its booster (``None`` and the booster for a pickled Booster)."""
    estimator = load_pickled(path, uri)
    if isinstance(estimator, xgb.Booster):
        return None, estimator
    if not isinstance(estimator, xgb.XGBModel):
        raise ModelLoadError(
            uri,
            f"{path.name} holds a {type(estimator).__module__}.{type(estimator).__name__}, not "
            "an XGBoost model (XGBClassifier, XGBRegressor or Booster); "
            "serve scikit-learn models with SKLearnServer",
        )
    try:
        booster = estimator.get_booster()
    except xgb.core.XGBoostError as exc:  # e.g. "need to call fit or load_model beforehand"
        raise ModelLoadError(uri, f"{path.name}: {_first_lines(exc)}") from exc
    return estimator, booster


def served_booster(booster: xgb.Booster) -> tuple[xgb.Booster, int | None]:
    """The rounds XGBoost's scikit-learn API predicts with: up to ``best_iteration`` when early
    stopping recorded one (``XGBModel._get_iteration_range``), every round otherwise (and for
    ``gblinear``). Sliced once here, so every method and the fast paths use the same trees."""
    best = booster.attr("best_iteration")
    learner = json.loads(booster.save_config())["learner"]
    if best is None or learner.get("gradient_booster", {}).get("name") == "gblinear":
        return booster, None
    end = int(best) + 1
    if end >= booster.num_boosted_rounds():
        return booster, int(best)
    return booster[:end], int(best)


def check_saved_version(path: Path, uri: str) -> str | None:
    """Refuse a model saved by a newer XGBoost than this one: XGBoost reads older models, not
    newer ones, and a newer file may load without error yet predict differently. Returns the
    version the file records, if it records one."""
    version = saved_version(path)
    if version is None:
        return None
    text = ".".join(str(v) for v in version)
    if tuple(version[:2]) > xgboost_version()[:2]:
        raise ModelLoadError(
            uri,
            f"{path.name} was saved by XGBoost {text}, newer than this server's XGBoost "
            f"{xgb.__version__}, which cannot read it reliably; re-save the model with "
            f"XGBoost <= {xgb.__version__} or use an image with XGBoost >= {text}",
        )
    return text


def _first_lines(exc: BaseException) -> str:
    """XGBoost's message without the native stack trace it appends."""
    text = str(exc).split("Stack trace:", 1)[0]
    text = re.sub(r"^\[\d\d:\d\d:\d\d\] [^:]+:\d+: ", "", text.strip())
    return " ".join(text.split())
