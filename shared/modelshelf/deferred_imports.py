"""Imports a library makes at start but uses only later, put off until they are used.

Why: a scikit-learn model's cold start is mostly imports, and a good part of them serve nothing
until much later, if ever (measured on the realistic bench's models, README "Cold start"):

* ``scipy.stats`` (with what it alone pulls in: ``scipy.interpolate``, ``scipy.ndimage``,
  ``scipy.integrate``) -- the largest single import of scikit-learn, which imports it at the
  top of ``sklearn.utils.fixes`` (every estimator, and XGBoost and LightGBM whenever
  scikit-learn is installed), ``model_selection``, ``metrics``, ``preprocessing``, ``_loss`` and
  ``covariance``, each to call one function (``rankdata``, ``gmean``, ``chi2.ppf``,
  ``stats.norm.ppf``...) mostly inside fitting or scoring code a server never runs -- but
  ``KNeighborsClassifier.predict`` (``fixes._mode``), ``PowerTransformer.transform`` and
  ``QuantileTransformer(output_distribution="normal")`` use it: such a model's first request
  imports it, in each worker;
* SciPy's optimizers (``scipy.optimize``: the linear models' solvers, NCA, calibration,
  bicluster scoring, scikit-learn's own line search), integration (``trapezoid`` in
  ``metrics._ranking``), interpolation (LARS's cross-validation) and spatial distances
  (``metrics.pairwise``; a ``scipy.spatial`` metric imports it at that model's first request):
  imported at the top of modules that any estimator's import pulls in (``sklearn.ensemble``
  imports the linear models through ``neighbors`` and ``decomposition``), used only when
  fitting or scoring: ~210 modules of a RandomForest's unpickling;
* pandas, imported at the top of ``sklearn.utils.fixes`` and used only to read ARFF files;
* gRPC and gRPC reflection, imported at the top of seldon-core's ``seldon_core.wrapper``
  (``get_rest_microservice``, which ``modelshelf serve`` calls for the Flask app and the
  metadata) and its ``prediction_pb2_grpc``, used only to build a gRPC server -- what a gRPC
  worker does, after the fork, with its own imports.

While ``deferring()`` is active (``modelshelf serve``'s parent, while it imports the front end,
builds the model and derives its metadata), exactly those import statements of those modules
(``DEFERRED``) bind stand-ins: ``import pandas`` a ``DeferredModule``, ``from scipy.stats import
rankdata`` a ``DeferredAttribute``; the first attribute read on one (or call of one) imports the
module and answers from the real object, which every later read and call goes to. A statement
naming anything else (``from scipy import sparse, stats``: ``sparse`` is imported as written)
is left alone for that name, and a module already imported is bound as usual. Nothing is put in
``sys.modules``, so checks that read ``sys.modules.get("pandas")`` -- "is this a DataFrame?":
scikit-learn's, narwhals', ours -- stay exact: no DataFrame can exist before pandas is imported,
and once anything imports it (a model fitted on a DataFrame, whose server imports it at load; a
``jsonData`` request; LightGBM and MLflow, which import it themselves) it is the real module.

Correctness does not depend on a library's version: a release that uses one of these names at
import time, or imports the module from somewhere else, just imports it then (the start is
slower, the answers the same). ``isinstance`` and ``issubclass`` against a stand-in import and
answer for the real class; a stand-in differs from the real object only where code tests
identity (``f is rankdata``, ``type(f)``, ``except BSpline``) or reads ``__doc__``/``__module__``;
none of the statements in ``DEFERRED`` does. ``MODELSHELF_DEFER_IMPORTS=false`` turns it all off.
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

#: ``false``: libraries import everything at start, as written.
DEFER_IMPORTS_ENV = "MODELSHELF_DEFER_IMPORTS"
#: The collector's thresholds during ``long_lived_imports``: a young-generation pass only per
#: 500,000 new objects (a default collector's first threshold is 700), none of the older
#: generations'. Not 0 (no pass at all): a load that makes cyclic garbage (a user's ``load()``
#: making 3 million small cycles) then kept all of it until the pause ended -- 1.6 GB per worker
#: where the default collector peaks at 49 MB. A young pass walks only the objects made since
#: the last one, so what a pause saves (repeated passes over what was loaded) is kept: the
#: CPU to unpickle a RandomForest with scikit-learn's import measured the same as with no pass.
PAUSED_THRESHOLDS = (500_000, 1_000_000, 1_000_000)

#: The importing module -> {the module its statement names -> the names it imports from it
#: that are deferred; ``()``: the statement is ``import module`` itself}.
DEFERRED: dict[str, dict[str, tuple[str, ...]]] = {
    "sklearn.utils.fixes": {"pandas": (), "scipy.stats": ()},
    "sklearn.preprocessing._data": {"scipy": ("stats",)},
    "sklearn.metrics._ranking": {"scipy.stats": ("rankdata",), "scipy.integrate": ("trapezoid",)},
    "sklearn.metrics.cluster._bicluster": {"scipy.optimize": ("linear_sum_assignment",)},
    "sklearn.linear_model._base": {"scipy": ("optimize",)},
    "sklearn.linear_model._least_angle": {"scipy": ("interpolate",)},
    "sklearn.metrics.pairwise": {"scipy.spatial": ("distance",)},
    "sklearn.linear_model._logistic": {"scipy": ("optimize",)},
    "sklearn.linear_model._ridge": {"scipy": ("optimize",)},
    "sklearn.linear_model._huber": {"scipy": ("optimize",)},
    "sklearn.linear_model._quantile": {"scipy.optimize": ("linprog",)},
    "sklearn.linear_model._glm.glm": {"scipy.optimize": ()},
    "sklearn.linear_model._glm._newton_solver": {"scipy.optimize": ()},
    "sklearn.neighbors._nca": {"scipy.optimize": ("minimize",)},
    "sklearn.utils.optimize": {
        "scipy.optimize._linesearch": ("line_search_wolfe2", "scalar_search_wolfe1")
    },
    "sklearn.calibration": {"scipy.optimize": ("minimize", "minimize_scalar")},
    "sklearn.model_selection._search": {"scipy.stats": ("rankdata",)},
    "sklearn._loss.link": {"scipy.stats": ("gmean",)},
    "sklearn.covariance._robust_covariance": {"scipy.stats": ("chi2",)},
    "sklearn.preprocessing._polynomial": {"scipy.interpolate": ("BSpline",)},
    "seldon_core.wrapper": {"grpc": (), "grpc_reflection.v1alpha": ("reflection",)},
    "seldon_core.proto.prediction_pb2_grpc": {"grpc": ()},
}


@contextlib.contextmanager
def long_lived_imports(garbage_collected_after: bool = True) -> Iterator[None]:
    """Within: only rare young-generation collections; after: what was allocated is frozen
    (kept out of the collector's passes). Loading a model imports its framework and unpickles
    it, and importing MLflow: hundreds of thousands of objects that live as long as the
    process, yet the collector walks them in its passes during the import and again in the one
    the next allocations start (around ``modelshelf serve``'s build and the loads: 3-11 % of
    the CPU to the first answer of the realistic bench's models, README "Cold start"). What
    garbage there is gets one full collection, before the freeze (``garbage_collected_after``:
    a model's loading runs the user's code, whose garbage must not be kept), or before the
    pause (MLflow's own import: a pass over its ~150,000 objects finds ~300 unreachable ones,
    which stay frozen; in a server's parent, which froze its front end, the pass before has
    little to walk). Nothing is collected or frozen when the body raises, nor when the
    collector is off already.

    The pause raises the thresholds (``PAUSED_THRESHOLDS``: rare young-generation passes,
    which bound the garbage a load's own cycles can pile up) instead of ``gc.disable()``, so
    ``gc.isenabled()`` stays the process's own switch: loading code that turns the collector
    off (a PythonModel's ``load_context``) or sets its own thresholds finds its choice kept
    after."""
    if not gc.isenabled():
        yield
        return
    if not garbage_collected_after:
        gc.collect()
    thresholds = gc.get_threshold()
    gc.set_threshold(*PAUSED_THRESHOLDS)
    try:
        yield
    finally:
        if gc.get_threshold() == PAUSED_THRESHOLDS:  # not changed within
            gc.set_threshold(*thresholds)
    if garbage_collected_after:
        gc.collect()
    gc.freeze()


def import_late(name: str) -> types.ModuleType:
    """Import ``name`` after the load. In a serving process, which froze what it loaded for the
    garbage collector (``supervisor``), the module's objects are frozen with them: left out,
    a module imported by a request (scipy.stats: tens of thousands of objects) is walked by
    every full collection from then on (measured: 7 % of ``/invocations``' req/s for pandas).
    A module imported already is returned as it is: nothing new to freeze, and the test whether
    the process froze (``gc.get_freeze_count``) walks every frozen object, ~20 ms once a
    framework is loaded (MLflow's pyfunc has pandas imported when its server asks for it).
    A module another thread is still importing (a stand-in's first use by concurrent
    requests) is waited for, as the import statement waits: half-initialized, it lacks the
    names the caller reads (``AttributeError``, then ``ImportError`` from the fallback)."""
    module = sys.modules.get(name)
    if module is not None:
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            __import__(name)  # waits for the importing thread (not for this one: circular)
            return sys.modules[name]
        return module
    __import__(name)  # the C import (-X importtime lists it; importlib.import_module's does not)
    module = sys.modules[name]
    if gc.get_freeze_count():
        gc.freeze()
    return module


class DeferredModule(types.ModuleType):
    """Stands for a module not imported yet; the first attribute read imports it (once) and
    every read is then answered by the real module."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_deferred_module"] = None

    def __getattr__(self, attribute: str) -> Any:
        module = self.__dict__["_deferred_module"]
        if module is None:
            module = import_late(self.__name__)
            self.__dict__["_deferred_module"] = module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        loaded = self.__dict__["_deferred_module"] is not None
        return f"<module {self.__name__!r} ({'imported' if loaded else 'deferred'})>"


class DeferredAttribute:
    """Stands for ``from module import name`` (a function, a class, an object or a submodule)
    until it is called or an attribute is read: then the import runs, once."""

    __slots__ = ("_module", "_name", "_target")

    def __init__(self, module: str, name: str) -> None:
        self._module, self._name, self._target = module, name, None

    def _resolve(self) -> Any:
        if self._target is None:
            module = import_late(self._module)
            try:
                self._target = getattr(module, self._name)
            except AttributeError:  # a submodule its package does not import itself
                self._target = import_late(f"{self._module}.{self._name}")
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._resolve(), attribute)

    # ``isinstance(x, BSpline)`` looks these up on the stand-in's type, never through
    # ``__getattr__``: without them it would answer False for every instance.
    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._resolve())

    def __subclasscheck__(self, subclass: type) -> bool:
        return issubclass(subclass, self._resolve())

    def __repr__(self) -> str:
        state = "imported" if self._target is not None else "deferred"
        return f"<{self._module}.{self._name} ({state})>"


def enabled() -> bool:
    """``MODELSHELF_DEFER_IMPORTS`` (default true)."""
    from modelshelf.server import bool_parameter

    return bool_parameter(
        DEFER_IMPORTS_ENV, os.environ.get(DEFER_IMPORTS_ENV, "true"), "environment variable"
    )


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
        if level == 0 and globals is not None:
            statements = DEFERRED.get(globals.get("__name__", ""))
            if statements is not None and name in statements:
                found = _deferred(name, tuple(fromlist or ()), statements[name], original)
                if found is not None:
                    return found
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = deferring_import
    try:
        yield
    finally:
        if builtins.__import__ is deferring_import:
            builtins.__import__ = original


class _FromImport:
    """What ``from module import a, b`` reads its names from: stand-ins and real objects."""


def _deferred(
    name: str, fromlist: tuple[str, ...], names: tuple[str, ...], original: Any
) -> Any | None:
    """What the statement gets instead of ``original``'s answer, or ``None`` (run it as
    written: nothing of it is deferred, the module is imported already, or its package is not
    installed -- the importer gets the ``ImportError`` it expects)."""
    top = name.partition(".")[0]
    if importlib.util.find_spec(top) is None:
        return None
    if not fromlist:  # ``import name``
        if names or name in sys.modules:
            return None
        if "." not in name:
            return DeferredModule(name)
        # ``import scipy.stats`` binds ``scipy``: enough where the package imports the
        # submodule on its first read (SciPy's module ``__getattr__``)
        package = original(top, None, None, (), 0)
        submodule = name[len(top) + 1 :]
        lazy = submodule in getattr(package, "submodules", ()) and "__getattr__" in vars(package)
        return package if lazy and "." not in submodule else None
    deferred = [item for item in fromlist if item in names and not _imported(name, item)]
    if not deferred:
        return None
    found = _FromImport()
    rest = tuple(item for item in fromlist if item not in deferred)
    if rest:  # the package itself is imported (cheap: the expensive part is what is deferred)
        module = original(name, None, None, rest, 0)
        for item in rest:
            setattr(found, item, getattr(module, item))
    for item in deferred:
        setattr(found, item, DeferredAttribute(name, item))
    return found


def _imported(module: str, name: str) -> bool:
    """Whether ``from module import name`` would import nothing new."""
    if f"{module}.{name}" in sys.modules:
        return True
    # ``vars``, not ``hasattr``: SciPy's module ``__getattr__`` would import the submodule
    return module in sys.modules and name in vars(sys.modules[module])
