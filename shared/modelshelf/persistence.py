"""``PERSISTENCE=1``: a component's state outlives its pod, kept in Redis.

seldon-core 1.18 accepts ``--persistence`` and ignores it. This module does the job for any
``SeldonComponent`` class, ours or a user's:

* ``persist(component)`` restores the component's last saved state from Redis (when there is one)
  and then saves it every ``PERSISTENCE_PERIOD`` seconds from a daemon thread, and once more when
  the process exits normally. Redis unreachable at start is a ``PersistenceError`` naming the
  address, so the process stops instead of silently forgetting what it learned.
* The state is what ``pickle`` would save: ``component.__getstate__()`` (by default the instance's
  attributes), restored with ``__setstate__`` when the class defines one. A class whose requests
  mutate state defines ``__getstate__`` to copy it under its own lock; the copy is pickled and sent
  outside that lock, so a save never holds up a request.
* A process saves only when its state changed since it restored or last saved, so an idle process
  (seldon's gRPC child, say) never overwrites what a busy one learned.
* The key is per deployment, predictor and predictive unit, from the environment the Seldon
  operator sets: ``SELDON_DEPLOYMENT_ID``, ``PREDICTOR_ID``, ``PREDICTIVE_UNIT_ID``.

Hooks: call ``persist(self)`` at the end of your ``load()``; or decorate the class with
``persistent``; or, without touching the class, run
``seldon-core-microservice modelshelf.persistence.MyModel`` (``launcher_interface_name``), which
imports ``MyModel`` from the working directory and serves a persistent subclass of it.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import pickle
import threading
from collections.abc import Mapping
from typing import Any

from modelshelf.errors import ModelshelfError
from modelshelf.number_settings import number_value, whole_env_number

logger = logging.getLogger(__name__)

HOST_ENV = "REDIS_SERVICE_HOST"
PORT_ENV = "REDIS_SERVICE_PORT"
PERIOD_ENV = "PERSISTENCE_PERIOD"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
DEFAULT_PERIOD = 60.0
#: Seconds to wait for Redis to accept a connection or answer a command.
REDIS_TIMEOUT = 5.0


class PersistenceError(ModelshelfError):
    """State could not be restored from, or written to, Redis; says where and why."""

    def __init__(self, where: str, key: str, reason: str) -> None:
        self.where = where
        self.key = key
        self.reason = reason
        super().__init__(f"persistence of {key} in Redis at {where}: {reason}")


def state_key(component: Any, environ: Mapping[str, str] = os.environ) -> str:
    """The Redis key of ``component``'s state: one per deployment, predictor and unit."""
    deployment = environ.get("SELDON_DEPLOYMENT_ID") or "local"
    predictor = environ.get("PREDICTOR_ID") or "default"
    unit = environ.get("PREDICTIVE_UNIT_ID") or type(component).__name__
    return f"modelshelf:state:{deployment}:{predictor}:{unit}"


def period_from(environ: Mapping[str, str] = os.environ) -> float:
    """``PERSISTENCE_PERIOD`` in seconds (default 60), read by ``modelshelf.number_settings``'
    rules (``inf`` and ``nan`` are refused like any other non-number)."""
    text = environ.get(PERIOD_ENV, "").strip()
    if not text:
        return DEFAULT_PERIOD
    return number_value(
        PERIOD_ENV, text, "a number of seconds > 0, e.g. 60", source="environment variable"
    )


def redis_client(environ: Mapping[str, str] = os.environ) -> Any:
    """A Redis client for ``REDIS_SERVICE_HOST`` / ``REDIS_SERVICE_PORT`` (not yet connected)."""
    import redis

    host = environ.get(HOST_ENV) or DEFAULT_HOST
    # As every number setting is read (a port 0, -1 or 70000 was taken, to fail at connect).
    expected = "a TCP port number, 1-65535"
    port = whole_env_number(PORT_ENV, DEFAULT_PORT, expected, at_most=65_535, environ=environ)
    return redis.Redis(
        host=host, port=port, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
    )


class Persister:
    """Saves one component's state to one Redis key, periodically, from a daemon thread."""

    def __init__(self, component: Any, client: Any, key: str, period: float) -> None:
        self.component = component
        self.client = client
        self.key = key
        self.period = period
        self.pid = os.getpid()
        self.saves = 0
        self._last_saved: bytes | None = None
        self._save_lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        return f"{kwargs.get('host')}:{kwargs.get('port')}"

    def restore(self) -> bool:
        """Load the saved state into the component; ``False`` when nothing was saved yet."""
        import redis

        try:
            blob = self.client.get(self.key)
        except redis.RedisError as exc:
            raise PersistenceError(
                self.where,
                self.key,
                f"cannot read the saved state ({type(exc).__name__}: {exc}); check "
                f"{HOST_ENV} / {PORT_ENV} and that Redis is running",
            ) from exc
        if blob is None:
            logger.info("no saved state under %s in Redis at %s yet", self.key, self.where)
            # The starting state is the baseline: an idle process (a gRPC child, a worker that
            # got no feedback) must not overwrite what another process learned.
            self._last_saved = self.snapshot()
            return False
        try:
            _set_state(self.component, pickle.loads(blob))
        except Exception as exc:  # any class's __setstate__/__reduce__ can raise anything
            raise PersistenceError(
                self.where,
                self.key,
                f"the saved state cannot be restored into {type(self.component).__name__}: "
                f"{exc!r}; delete the key to start afresh",
            ) from exc
        self._last_saved = blob
        logger.info("restored the state of %s from %s", type(self.component).__name__, self.key)
        return True

    def snapshot(self) -> bytes:
        """The component's state, pickled (``__getstate__`` copies; pickling happens here)."""
        state = _get_state(self.component)
        try:
            return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise PersistenceError(
                self.where,
                self.key,
                f"the state of {type(self.component).__name__} cannot be pickled: "
                f"{_unpicklable(state) or repr(exc)}; define __getstate__ / __setstate__ to "
                "choose what is saved",
            ) from exc

    def save(self) -> bool:
        """Write the state if it changed since the last restore or save; whether it wrote."""
        import redis

        with self._save_lock:
            blob = self.snapshot()
            if blob == self._last_saved:
                return False
            try:
                self.client.set(self.key, blob)
            except redis.RedisError as exc:
                raise PersistenceError(
                    self.where, self.key, f"cannot save ({type(exc).__name__}: {exc})"
                ) from exc
            self._last_saved = blob
            self.saves += 1
            return True

    def start(self) -> None:
        """Save every ``period`` seconds in a daemon thread, and at a normal exit."""
        self._thread = threading.Thread(
            target=self._run, name=f"modelshelf-persistence {self.key}", daemon=True
        )
        self._thread.start()
        atexit.register(self._save_at_exit)

    def stop(self) -> None:
        """Stop the periodic saves (the state is saved once more first)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=REDIS_TIMEOUT * 2)
        atexit.unregister(self._save_at_exit)

    def _run(self) -> None:
        while not self._stopped.wait(self.period):
            self._save_logging_failures()
        self._save_logging_failures()

    def _save_logging_failures(self) -> None:
        try:
            self.save()
        except PersistenceError as exc:  # Redis may come back: keep serving, try next period
            logger.warning("%s; retrying in %s s", exc, self.period)

    def _save_at_exit(self) -> None:
        if os.getpid() == self.pid and not self._stopped.is_set():
            self._save_logging_failures()


_persisters: dict[int, Persister] = {}
_persisters_lock = threading.Lock()


def persist(
    component: Any,
    *,
    period: float | None = None,
    client: Any = None,
    key: str | None = None,
) -> Persister:
    """Restore ``component``'s state from Redis if saved, then save it periodically.

    Call it in the process that serves requests (from ``load()``: seldon-core calls that in each
    worker after forking). Calling it again in the same process returns the running persister.
    Raises ``PersistenceError`` when Redis cannot be reached or the state cannot be pickled.
    """
    with _persisters_lock:
        running = _persisters.get(id(component))
        if running is not None and running.component is component and running.pid == os.getpid():
            return running
        persister = Persister(
            component,
            client if client is not None else redis_client(),
            key or state_key(component),
            period if period is not None else period_from(),
        )
        _check_reachable(persister)
        persister.restore()
        persister.snapshot()  # an unpicklable state fails now, not in a thread later
        persister.start()
        _persisters[id(component)] = persister
    logger.info(
        "persisting %s to %s in Redis at %s every %s s",
        type(component).__name__,
        persister.key,
        persister.where,
        persister.period,
    )
    return persister


def persistent(cls: type) -> type:
    """A subclass of ``cls`` whose ``load()`` runs the class's own ``load()``, then ``persist``."""
    own_load = getattr(cls, "load", None)

    def load(self: Any) -> None:
        if callable(own_load):
            with contextlib.suppress(NotImplementedError):  # seldon's "no load step"
                own_load(self)
        persist(self)

    namespace = {
        "load": load,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    return type(cls.__name__, (cls,), namespace)


#: ``seldon-core-microservice`` imports ``a.b.C`` as module ``a.b``, attribute ``C``; the user's
#: own dotted module path is carried with this separator instead of dots.
_MODULE_SEPARATOR = "/"
_wrapped: dict[str, type] = {}


def launcher_interface_name(model_name: str) -> str:
    """The interface name that serves ``MODEL_NAME`` persistently under seldon-core-microservice.

    ``MyModel`` (module ``MyModel``, class ``MyModel``, Seldon's convention) becomes
    ``modelshelf.persistence.MyModel``; ``pkg.mod.MyClass`` becomes
    ``modelshelf.persistence.pkg/mod/MyClass``.
    """
    return f"{__name__}.{model_name.replace('.', _MODULE_SEPARATOR)}"


def __getattr__(name: str) -> type:
    """``modelshelf.persistence.MyModel``: the user's ``MyModel`` class, made ``persistent``."""
    if name.startswith("_"):
        raise AttributeError(name)
    if name in _wrapped:
        return _wrapped[name]
    parts = name.split(_MODULE_SEPARATOR)
    module_name = ".".join(parts[:-1]) if len(parts) > 1 else parts[0]
    class_name = parts[-1]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AttributeError(
            f"no module {module_name!r} to serve persistently (MODEL_NAME={name!r}); "
            f"expected {module_name}.py in the working directory {os.getcwd()}"
        ) from exc
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise AttributeError(
            f"module {module_name!r} has no class {class_name!r} (MODEL_NAME={name!r})"
        ) from None
    _wrapped[name] = persistent(cls)
    return _wrapped[name]


def _check_reachable(persister: Persister) -> None:
    import redis

    try:
        persister.client.ping()
    except redis.RedisError as exc:
        raise PersistenceError(
            persister.where,
            persister.key,
            f"Redis is unreachable ({type(exc).__name__}: {exc}); set {HOST_ENV} / {PORT_ENV} "
            "to a running Redis, or unset PERSISTENCE",
        ) from exc


def _get_state(component: Any) -> Any:
    state = component.__getstate__()
    return dict(state) if type(state) is dict else state  # a top-level copy, taken atomically


def _set_state(component: Any, state: Any) -> None:
    setstate = getattr(component, "__setstate__", None)
    if callable(setstate):
        setstate(state)
    elif isinstance(state, dict):
        component.__dict__.update(state)
    else:
        raise TypeError(
            f"{type(component).__name__} has no __setstate__ to take a saved "
            f"{type(state).__name__} state"
        )


def _unpicklable(state: Any) -> str:
    """Which attribute of a dict state cannot be pickled, to name it in the error."""
    if not isinstance(state, dict):
        return ""
    for name, value in state.items():
        try:
            pickle.dumps(value)
        except Exception as exc:
            return f"attribute {name!r} ({type(value).__name__}): {exc}"
    return ""
