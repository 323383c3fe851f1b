"""An sklearn-flavor model's methods: their verified numpy closed form when ``fast_path`` allows
and one is found. Their outputs' names are the base's (``modelshelf.server.output_names``)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("modelshelf.frameworks.mlflow")


def closed_form_or(
    own: Any, model: Any, method: str, columns: list[str] | None, fast_path: bool = True
) -> Any:
    """An sklearn-flavor model's ``method`` (``own``, the bound method) as a numpy closed form
    when ``fast_path`` is on and one equal to scikit-learn's is found (a one-row request then
    skips scikit-learn's ~200 µs of input validation; the server validated the input already);
    else ``own``. ``columns``: the DataFrame columns requests arrive with."""
    fitted = getattr(model, "feature_names_in_", None)
    if (
        fast_path
        and columns is not None
        and fitted is not None
        and [str(n) for n in fitted] != columns
    ):
        kind = type(model).__name__
        logger.info("%s.%s: scikit-learn's own call (fitted on other columns)", kind, method)
        return own
    from modelshelf.frameworks.sklearn_closed_form import served_call

    n_features = getattr(model, "n_features_in_", None)
    call, fast = served_call(model, method, fast_path, n_features, columns, logger)
    return call if fast else own
