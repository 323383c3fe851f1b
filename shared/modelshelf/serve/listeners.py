"""Which gRPC workers listen: readiness means every port the server serves accepts connections.

The REST and metrics ports are bound by the parent before any fork, so they accept (into the
backlog) from the start; each gRPC worker binds the gRPC port itself (SO_REUSEPORT), after it
has loaded the model -- milliseconds after REST already answered "ready". So every readiness
answer (V2 ``/v2/health/ready`` and model ready, KServe V1 ``/v1/models/NAME``, gRPC
``ServerReady`` / ``ModelReady``, and Seldon's ``/health/status`` for every class, a user's own
too: ``SeldonRestApp.not_listening``) also asks ``all_listening``: one flag per gRPC worker slot, in
memory shared by the forks, set by the worker once its server listens and cleared by the parent
when that worker dies (until its replacement listens). No gRPC worker: nothing to wait for.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from typing import Any

#: One byte per gRPC worker slot (``expect``), inherited by every fork; ``None``: no gRPC.
_flags: Any = None


def expect(grpc_workers: int) -> None:
    """In the parent, before the forks: readiness waits for ``grpc_workers`` listeners."""
    global _flags
    context = multiprocessing.get_context("fork")
    _flags = context.RawArray("b", grpc_workers) if grpc_workers else None


def all_listening() -> bool:
    """Whether every gRPC worker listens (always, with none)."""
    return _flags is None or all(_flags)


@dataclass(frozen=True)
class ListenerSlot:
    """One gRPC worker's flag: ``set`` by the worker once it listens, ``clear`` by the parent
    when it dies."""

    index: int

    def set(self) -> None:
        if _flags is not None:
            _flags[self.index] = 1

    def clear(self) -> None:
        if _flags is not None:
            _flags[self.index] = 0

    def is_set(self) -> bool:
        """Whether this slot's worker listens (or listened, until the parent clears it)."""
        return _flags is None or bool(_flags[self.index])
