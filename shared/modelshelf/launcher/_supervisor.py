"""Running the steps in order, each as the leader of its own process group, and stopping one as
its ``StopPolicy`` says when the container is asked to stop."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from modelshelf.launcher._processes import (
    become_subreaper,
    group_members,
    serving_processes,
    signal_all,
)
from modelshelf.launcher._programs import conda_environment
from modelshelf.launcher._settings import LaunchSettings, Step, StopPolicy
from modelshelf.launcher._signals import drain, signals_to_pipe, wait_for_signals
from modelshelf.redaction import redact_text

logger = logging.getLogger("modelshelf.launcher")  # the public name, as before the split

#: After the front end has exited: how long its leftover processes get before SIGKILL.
LEFTOVER_SECONDS = 2.0
_POLL_SECONDS = 0.1


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
    with signals_to_pipe() as wakeups:
        become_subreaper()
        for step in steps:
            if step.stop_policy is not StopPolicy.GROUP:  # the front end, after before-run
                prefix = conda_environment(env)
                if prefix is not None:
                    logger.info("front end runs in the conda environment %s", prefix)
                    step = settings.frontend_step(prefix)
            code, stopped = Supervisor(step, settings.server_dir, env, wakeups).run(
                settings.stop_seconds
            )
            if stopped and code == 0 and step.stop_policy is StopPolicy.GROUP:
                # before-run was cut short, however its shell chose to exit: not a success.
                code = 128 + signal.SIGTERM
            if code != 0 or stopped:
                if code != 0 and not stopped:
                    logger.error("%s exited with %d", step.name, code)
                return code
    return 0


class Supervisor:
    """Runs one step as the leader of its own process group until it exits, forwarding a stop
    request as the step's ``StopPolicy`` says and killing what is left after the deadline."""

    def __init__(self, step: Step, cwd: Path, env: Mapping[str, str], wakeups: int) -> None:
        self.step = step
        self.cwd = cwd
        self.env = env
        self.wakeups = wakeups
        self.leader = 0
        self.exit_code: int | None = None
        self.stop_started: float | None = None
        self.first_wave: set[int] = set()
        self.second_wave_sent = False

    def run(self, stop_seconds: float) -> tuple[int, bool]:
        """The step's exit status (shell convention: 128+N when killed by signal N), and
        whether it ended because a stop was requested."""
        if drain(self.wakeups) & {signal.SIGTERM, signal.SIGINT}:
            return 128 + signal.SIGTERM, True  # asked to stop before this step started
        logger.info("starting %s: %s", self.step.name, redact_text(" ".join(self.step.command)))
        process = subprocess.Popen(
            self.step.command, cwd=self.cwd, env=self.env, start_new_session=True
        )
        self.leader = process.pid
        while True:
            self._reap()
            if self.exit_code is not None:
                process.returncode = self.exit_code  # reaped here, not by Popen
                self._stop_leftovers()
                if self.stop_started is not None:
                    logger.info(
                        "%s stopped in %.1f s (exit %d)",
                        self.step.name,
                        time.monotonic() - self.stop_started,
                        self.exit_code,
                    )
                return self.exit_code, self.stop_started is not None
            timeout = None
            if self.stop_started is not None:
                timeout = _POLL_SECONDS
            for signum in wait_for_signals(self.wakeups, timeout):
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._request_stop(signum, stop_seconds)
            if self.stop_started is not None:
                self._advance_stop(stop_seconds)

    def _request_stop(self, signum: int, stop_seconds: float) -> None:
        name = signal.Signals(signum).name
        if self.stop_started is not None:
            logger.warning("%s again: killing %s now", name, self.step.name)
            signal_all(group_members(self.leader), signal.SIGKILL)
            return
        self.stop_started = time.monotonic()
        members = group_members(self.leader)
        if self.step.stop_policy is StopPolicy.LEADER:
            targets = {self.leader}
        elif self.step.stop_policy is StopPolicy.SERVING:
            targets = {self.leader} | serving_processes(members)
        else:
            targets = set(members) | {self.leader}
        logger.info(
            "%s: stopping %s (%d of %d processes first; %.0f s before SIGKILL)",
            name,
            self.step.name,
            len(targets),
            len(members),
            stop_seconds,
        )
        self.first_wave = targets
        signal_all(targets, signal.SIGTERM)

    def _advance_stop(self, stop_seconds: float) -> None:
        assert self.stop_started is not None
        members = group_members(self.leader)
        if time.monotonic() - self.stop_started > stop_seconds:
            logger.warning(
                "%s still running after %.0f s: killing %d processes",
                self.step.name,
                stop_seconds,
                len(members),
            )
            signal_all(members, signal.SIGKILL)
            signal_all([self.leader], signal.SIGKILL)
        elif (
            self.step.stop_policy is StopPolicy.SERVING
            and not self.second_wave_sent
            and not (self.first_wave - {self.leader}) & set(members)
        ):
            # The serving processes are gone: the helpers they needed can stop now.
            self.second_wave_sent = True
            signal_all(set(members) - {self.leader}, signal.SIGTERM)

    def _reap(self) -> None:
        """Collect every finished child: the leader, and orphans re-parented to us."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.leader:
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code

    def _stop_leftovers(self) -> None:
        """Processes of the group that outlived their leader: SIGTERM, then SIGKILL."""
        deadline = time.monotonic() + LEFTOVER_SECONDS
        signalled = False
        while members := group_members(self.leader):
            if not signalled:
                signal_all(members, signal.SIGTERM)
                signalled = True
            elif time.monotonic() > deadline:
                signal_all(members, signal.SIGKILL)
            time.sleep(_POLL_SECONDS / 2)
            self._reap()
        self._reap()
