"""The datatype and shape of each V2 output, found at load by calling its method once.

A model's attributes do not say what every method answers: KMeans' ``predict`` gives INT32
cluster numbers, IsolationForest's INT64 -1 / 1, a classifier's ``predict`` one label per row,
a transform as many columns as it makes. Metadata that guessed (FP64, ``[-1, -1]``) misled the
clients that build their buffers from it. So a server that opts in (``ModelServer.
probes_outputs``) has each method called once, at load, on one valid row, exactly as a request
reaches it (``model_input``, the method, ``model_output``), and the answer's datatype and
shape -- rows as ``-1`` -- become the metadata's. The row is one the fast path's verifier
already probes with (``accelerators``): a row of small numbers, a frame of the categories a
pipeline's encoders learnt, with a LightGBM model's learnt categories in its categorical
columns, or one text for a text pipeline.

A probe never stops a model from loading: a row or a method that fails leaves that output to
the description attributes give (the reason goes to the DEBUG log). Nothing runs per request.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import numpy as np

from modelshelf.metadata import tensor_type
from modelshelf.serve.server_methods import probed_methods

logger = logging.getLogger(__name__)

#: The one text a text pipeline's probe row holds.
PROBE_TEXT = "modelshelf"


def probe_outputs(server: Any) -> dict[str, tuple[str, list[int]]]:
    """Per method a V2 output may name: the datatype and shape (``-1`` rows) of its answer to
    one probe row; methods whose probe failed, or answer no array of one row, are absent."""
    try:
        X, names = probe_request(server)
        methods = probed_methods(server)
    except Exception as exc:  # a model this cannot build a row for keeps its description
        logger.debug("no probe row for %s: %s: %s", server.model_kind(), type(exc).__name__, exc)
        return {}
    found: dict[str, tuple[str, list[int]]] = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for name, method in methods.items():
            try:
                answer = server.model_output(method.call(server.model_input(X, names)))
            except Exception as exc:  # the method's description stays as attributes give it
                logger.debug("probe of %s failed: %s: %s", name, type(exc).__name__, exc)
                continue
            described = answer_description(answer)
            if described is None:
                logger.debug("probe of %s: %s is no array of one row", name, type(answer))
                continue
            found[name] = described
    return found


def probe_request(server: Any) -> tuple[Any, list[str]]:
    """One valid row for ``server``'s model, as a request hands it to ``model_input``: ``X``
    and its column names."""
    from modelshelf.accelerators.verify import adversarial_rows

    model, columns = server.model, server.feature_names
    if getattr(server, "takes_text", False):
        return np.array([[PROBE_TEXT]], dtype=object), []
    if getattr(model, "steps", None) and getattr(model.steps[0][1], "transformers_", None):
        from modelshelf.accelerators.sklearn_column_transformer import probe_row

        frame = probe_row(model)  # one row of learnt categories and numbers
        return frame, [str(c) for c in frame.columns]
    row = adversarial_rows(int(server.n_features))[0][:1]  # small finite numbers
    categories = getattr(server, "categories", None)
    if categories:  # LightGBM's categorical columns hold one of their categories
        row = row.astype(object)
        for column, values in categories.items():
            row[0, columns.index(column)] = values[0]
        return row, list(columns)
    return row, list(columns or [])


def answer_description(answer: Any) -> tuple[str, list[int]] | None:
    """The V2 datatype and shape (rows as ``-1``) of a method's answer to one row, as the V2
    protocol sends it (``inference.Tensor.from_array``); ``None`` for an answer that is no
    array of one row (a DataFrame, a sparse matrix)."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(answer, pd.DataFrame):
        return None
    if pd is not None and isinstance(answer, pd.Series):
        answer = answer.to_numpy()
    if isinstance(answer, dict) or hasattr(answer, "toarray"):
        return None
    array = np.asarray(answer)
    if array.ndim == 0 or array.shape[0] != 1:
        return None
    return tensor_type(array.dtype), [-1, *(int(d) for d in array.shape[1:])]
