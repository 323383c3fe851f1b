"""Imports a library makes at start but uses only later, put off until they are used.

Why: two top-level imports cost a cold start and serve nothing until much later, if ever:

* scikit-learn's ``sklearn.utils.fixes`` -- imported by every estimator, and by XGBoost and
  LightGBM whenever scikit-learn is installed -- imports pandas (~150 ms of a ~1 s start on a
  quiet machine) and uses it only in a helper for reading ARFF files;
* seldon-core's ``seldon_core.wrapper`` (``get_rest_microservice``, which ``modelshelf serve``
  calls for the Flask app and the metadata) and its ``prediction_pb2_grpc`` import gRPC and
  gRPC reflection (~25 ms), which they use only to build a gRPC server -- what a gRPC worker
  does, after the fork, with its own imports.

While ``deferring()`` is active (``modelshelf serve``'s parent, while it imports the front end,
builds the model and derives its metadata), exactly those import statements of those modules
(``DEFERRED``) bind a ``DeferredModule`` instead: the first attribute read on it imports the
module and reads the attribute from it (``from package import submodule`` binds one per
submodule). Nothing is put in ``sys.modules``, so the checks that read
``sys.modules.get("pandas")`` -- "is this a DataFrame?": scikit-learn's, narwhals', ours -- stay
exact: no DataFrame can exist before pandas is imported, and once anything imports it (a model
fitted on a DataFrame, whose server imports it at load; a ``jsonData`` request; LightGBM and
MLflow, which import it themselves) it is the real module there.

Every other import, and these modules from any other importer, run as written; a module
already imported is bound as usual. ``MODELSHELF_DEFER_IMPORTS=false`` turns it off.
(``scipy.stats``, which ``fixes`` also imports at the top and uses only in one function, is not
deferred: ``sklearn.model_selection`` imports it anyway, and ``sklearn.ensemble``,
``sklearn.linear_model`` and XGBoost all import that.)
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

#: ``false``: libraries import everything at start, as written.
DEFER_IMPORTS_ENV = "MODELSHELF_DEFER_IMPORTS"

#: The importing module -> the absolute imports in it that are deferred: ``import name``, or
#: ``from name import submodule, ...``.
DEFERRED: dict[str, frozenset[str]] = {
    "sklearn.utils.fixes": frozenset({"pandas"}),
    "seldon_core.wrapper": frozenset({"grpc", "grpc_reflection.v1alpha"}),
    "seldon_core.proto.prediction_pb2_grpc": frozenset({"grpc"}),
}


class DeferredModule(types.ModuleType):
    """Stands for a module not imported yet; the first attribute read imports it (once) and
    every read is then answered by the real module."""

    def __init__(self, name: str, submodules: tuple[str, ...] = ()) -> None:
        super().__init__(name)
        self.__dict__["_deferred_module"] = None
        for submodule in submodules:  # what ``from name import submodule`` reads
            self.__dict__[submodule] = DeferredModule(f"{name}.{submodule}")

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
        if level == 0 and globals is not None and name not in sys.modules:
            deferred = DEFERRED.get(globals.get("__name__", ""))
            if deferred is not None and name in deferred:
                found = _deferred(name, tuple(fromlist or ()))
                if found is not None:
                    return found
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = deferring_import
    try:
        yield
    finally:
        if builtins.__import__ is deferring_import:
            builtins.__import__ = original


def _deferred(name: str, fromlist: tuple[str, ...]) -> DeferredModule | None:
    """What the import binds when deferred, or ``None``: import it as written (a dotted
    ``import a.b``, which binds ``a``; a package that is not installed, so the importer gets the
    ``ImportError`` it expects)."""
    if "." in name and not fromlist:
        return None
    if importlib.util.find_spec(name.partition(".")[0]) is None:
        return None
    return DeferredModule(name, fromlist)
