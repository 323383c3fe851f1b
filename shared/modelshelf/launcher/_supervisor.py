"""Running the steps in order under ``modelshelf.supervision``, each as the leader of its own
session, and stopping one as its ``StopPolicy`` says when the container is asked to stop."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from modelshelf.launcher._programs import conda_environment
from modelshelf.launcher._settings import LaunchSettings, Step, StopPolicy
from modelshelf.redaction import redact_text
from modelshelf.supervision import Child, Supervisor

logger = logging.getLogger("modelshelf.launcher")  # the public name, as before the split


def launch(settings: LaunchSettings, environ: Mapping[str, str] | None = None) -> int:
    """Run the steps in order; the first that fails (or is stopped) ends the launch."""
    env = dict(os.environ if environ is None else environ)
    steps = settings.steps()
    logger.info(
        "%s (%s) on ports http %d, grpc %d, metrics %d; front end %s%s",
        settings.model_name,
        settings.service_type,
        settings.http_port,
        settings.grpc_port,
        settings.metrics_port,
        settings.frontend,
        "; persistence on" if settings.persistence else "",
    )
    supervisor = Supervisor(settings.stop_seconds, reap_orphans=True)  # PID 1 reaps orphans
    with supervisor.watching_signals():
        for step in steps:
            if step.stop_policy is not StopPolicy.GROUP:  # the front end, after before-run
                prefix = conda_environment(env)
                if prefix is not None:
                    logger.info("front end runs in the conda environment %s", prefix)
                    step = settings.frontend_step(prefix)
            code, stopped = run_step(supervisor, step, settings.server_dir, env)
            if stopped and code == 0 and step.stop_policy is StopPolicy.GROUP:
                # before-run was cut short, however its shell chose to exit: not a success.
                code = 128 + signal.SIGTERM
            if code != 0 or stopped:
                if code != 0 and not stopped:
                    logger.error("%s exited with %d", step.name, code)
                return code
    return 0


def run_step(
    supervisor: Supervisor, step: Step, cwd: Path, env: Mapping[str, str]
) -> tuple[int, bool]:
    """The step's exit status (shell convention: 128+N when killed by signal N), and whether
    it ended because a stop was requested."""
    if supervisor.stop_requested:
        return 128 + signal.SIGTERM, True  # asked to stop before this step started
    logger.info("starting %s: %s", step.name, redact_text(" ".join(step.command)))
    child = supervisor.start_command(step.name, step.command, cwd=cwd, env=env)
    while child.poll() is None and not supervisor.stop_signals:
        supervisor.wait(None)
    if not supervisor.stop_signals:
        supervisor.stop_leftovers(child)
        return child.exit_code or 0, False
    started = time.monotonic()
    supervisor.stop(
        [child],
        first=functools.partial(first_wave, step.stop_policy),
        then_rest=step.stop_policy is StopPolicy.SERVING,
    )
    code = child.exit_code or 0  # reaped by stop
    logger.info("%s stopped in %.1f s (exit %d)", step.name, time.monotonic() - started, code)
    return code, True


def first_wave(policy: StopPolicy, child: Child) -> set[int]:
    """The processes of ``child`` that get SIGTERM first under ``policy``."""
    if policy is StopPolicy.LEADER:
        return {child.pid}
    if policy is StopPolicy.SERVING:
        return {child.pid} | serving_processes(child.processes())
    return child.processes()


def serving_processes(pids: Iterable[int]) -> set[int]:
    """The processes among ``pids`` that hold a listening TCP socket (read from ``/proc``)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            rows_fields = (row.split() for row in rows)
            listening |= {f"socket:[{f[9]}]" for f in rows_fields if f[3] == "0A"}  # TCP_LISTEN
    return {pid for pid in pids if _descriptor_targets(pid) & listening}


def _descriptor_targets(pid: int) -> set[str]:
    targets = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets
