"""``modelshelf run``, the container entry point: read Seldon's environment, run ``before-run``,
start the front end, and stop it gracefully when the container is asked to stop.

Why a launcher at all: a container whose command is ``seldon-core-microservice`` ignores SIGTERM
in practice (its gRPC child never gets the signal and the main process waits on it until the
runtime kills it), and a naive "SIGTERM the whole process group" breaks in-flight requests
(seldon-core's metrics manager dies first and the requests that still write to it fail with
500). So the launcher runs every child in its own process group and stops it in order:

* ``modelshelf serve`` forwards signals to its own workers, so it gets the signal alone;
* ``seldon-core-microservice`` gets it in every process that *serves a port* (gunicorn masters
  and workers, gRPC workers) first; the helpers (the metrics manager, the gRPC parent) stop
  after the serving processes are gone, so in-flight requests finish;
* whatever is left after ``MODELSHELF_STOP_SECONDS`` is killed, and the launcher exits with the
  front end's exit status (0 after a graceful stop).

As PID 1 of a container it also reaps orphaned processes (it is a child subreaper elsewhere).

One module a concern: ``_settings`` (what the environment asks for, and the commands it makes),
``_values`` (reading one variable), ``_programs`` (where the front ends are), ``_supervisor``
(running the steps and stopping them with ``modelshelf.supervision``, the supervisor ``modelshelf
serve`` and ``graph run`` use too).
"""

from modelshelf.launcher._programs import conda_environment, modelshelf_serve_available
from modelshelf.launcher._settings import LaunchSettings, Step, StopPolicy
from modelshelf.launcher._supervisor import launch

__all__ = [
    "LaunchSettings",
    "Step",
    "StopPolicy",
    "conda_environment",
    "launch",
    "modelshelf_serve_available",
]
