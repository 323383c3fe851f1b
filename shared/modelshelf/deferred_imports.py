"""Imports a framework makes at start but uses only later, put off until they are used.

Why: scikit-learn's ``sklearn.utils.fixes`` -- imported by every estimator, and by XGBoost and
LightGBM whenever scikit-learn is installed -- imports pandas at the top (~150 ms of a ~1 s
start on a quiet machine) and uses it only in a helper for reading ARFF files. While
``deferring()`` is active (``modelshelf serve``'s parent, while it builds the model and derives
its metadata), that one import statement of that one module (``DEFERRED``) binds a
``DeferredModule`` instead: the first attribute read on it imports pandas and reads the
attribute from it. Nothing is put in ``sys.modules``, so the checks that read
``sys.modules.get("pandas")`` -- "is this a DataFrame?": scikit-learn's, narwhals', ours -- stay
exact: no DataFrame can exist before pandas is imported, and once anything imports it (a model
fitted on a DataFrame, whose server imports it at load; a ``jsonData`` request; LightGBM and
MLflow, which import it themselves) it is the real module there.

Every other import, and pandas from any other module, runs as written.
``MODELSHELF_DEFER_IMPORTS=false`` turns it off. (``scipy.stats``, which ``fixes`` also imports
at the top and uses only in one function, is not deferred: ``sklearn.model_selection`` imports
it anyway, and ``sklearn.ensemble``, ``sklearn.linear_model`` and XGBoost all import that.)
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

#: ``false``: frameworks import everything at start, as written.
DEFER_IMPORTS_ENV = "MODELSHELF_DEFER_IMPORTS"

#: The importing module -> the absolute imports of it that are deferred.
DEFERRED: dict[str, frozenset[str]] = {
    "sklearn.utils.fixes": frozenset({"pandas"}),
}


class DeferredModule(types.ModuleType):
    """Stands for a module not imported yet; the first attribute read imports it (once) and
    every read is then answered by the real module."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_deferred_module"] = None

    def __getattr__(self, attribute: str) -> Any:
        module = self.__dict__["_deferred_module"]
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_deferred_module"] = module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        loaded = self.__dict__["_deferred_module"] is not None
        return f"<module {self.__name__!r} ({'imported' if loaded else 'deferred'})>"


def enabled() -> bool:
    """``MODELSHELF_DEFER_IMPORTS`` (default true)."""
    from modelshelf.server import bool_parameter

    return bool_parameter(DEFER_IMPORTS_ENV, os.environ.get(DEFER_IMPORTS_ENV, "true"))


@contextlib.contextmanager
def deferring(active: bool | None = None) -> Iterator[None]:
    """Within: ``DEFERRED``'s imports are deferred (see the module's docstring). ``active``
    (default: ``enabled()``) False: nothing changes."""
    if not (enabled() if active is None else active):
        yield
        return
    original = builtins.__import__

    def deferring_import(
        name: str,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level == 0 and not fromlist and globals is not None:
            deferred = DEFERRED.get(globals.get("__name__", ""))
            if deferred is not None and name in deferred and name not in sys.modules:
                found = _deferred(name)
                if found is not None:
                    return found
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = deferring_import
    try:
        yield
    finally:
        if builtins.__import__ is deferring_import:
            builtins.__import__ = original


def _deferred(name: str) -> DeferredModule | None:
    """What ``import name`` binds when deferred, or ``None`` (not installed: import it as
    written, so the importer sees the ``ImportError`` it expects)."""
    return DeferredModule(name) if importlib.util.find_spec(name) is not None else None
