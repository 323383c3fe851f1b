"""The container entry point's logic: read Seldon's environment, run ``before-run``, start the
front end, and stop it gracefully when the container is asked to stop.

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
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from modelshelf.errors import ConfigurationError
from modelshelf.persistence import launcher_interface_name
from modelshelf.serve.options import SERVICE_TYPES

logger = logging.getLogger(__name__)

#: seldon-core-microservice's --service-type has no OUTPUT_TRANSFORMER. It serves every endpoint
#: whatever the type (1.18 only validates the value), so the closest type it accepts stands in.
SELDON_SERVICE_TYPE = {"OUTPUT_TRANSFORMER": "TRANSFORMER"}
API_TYPES = ("REST", "GRPC")
FRONTENDS = ("modelshelf", "seldon")
BEFORE_RUN = "before-run"

#: Ports Seldon Core's operator assigns first (seldon-core's own wrapper defaults gRPC to 5000).
DEFAULT_PORTS = {
    "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": 9000,
    "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": 9500,
    "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": 6000,
}
DEFAULT_STOP_SECONDS = 9.0
#: After the front end has exited: how long its leftover processes get before SIGKILL.
LEFTOVER_SECONDS = 2.0
_POLL_SECONDS = 0.1
_PR_SET_CHILD_SUBREAPER = 36


class StopPolicy(Enum):
    """Which processes of the child's group get the stop signal first."""

    GROUP = "group"  # all of them (before-run: nothing to finish)
    LEADER = "leader"  # the group leader, which forwards it itself (modelshelf serve)
    SERVING = "serving"  # the leader and every process serving a TCP port (seldon-core)


@dataclass(frozen=True)
class Step:
    """One child process the launcher runs to its end."""

    name: str
    command: tuple[str, ...]
    stop_policy: StopPolicy


@dataclass(frozen=True)
class LaunchSettings:
    """What the container's environment asks for, validated before anything starts."""

    model_name: str
    service_type: str
    api_types: tuple[str, ...]
    persistence: bool
    parameters: str
    http_port: int
    grpc_port: int
    metrics_port: int
    frontend: str
    server_dir: Path
    stop_seconds: float
    frontend_args: tuple[str, ...] = field(default=())

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        server_dir: Path,
        frontend_args: Sequence[str] = (),
    ) -> LaunchSettings:
        """Read MODEL_NAME, SERVICE_TYPE, API_TYPE, PERSISTENCE, PREDICTIVE_UNIT_PARAMETERS, the
        PREDICTIVE_UNIT_*_PORT variables, MODELSHELF_FRONTEND and MODELSHELF_STOP_SECONDS."""
        model_name = environ.get("MODEL_NAME", "").strip()
        if not model_name:
            raise ConfigurationError(
                "MODEL_NAME",
                environ.get("MODEL_NAME", ""),
                "the Python class to serve, e.g. "
                "SKLearnServer (a module of that name in the server folder defines it)",
            )
        service_type = environ.get("SERVICE_TYPE", "MODEL").strip().upper() or "MODEL"
        if service_type not in SERVICE_TYPES:
            raise ConfigurationError(
                "SERVICE_TYPE", environ["SERVICE_TYPE"], "one of " + ", ".join(SERVICE_TYPES)
            )
        return cls(
            model_name=model_name,
            service_type=service_type,
            api_types=_api_types(environ.get("API_TYPE", "")),
            persistence=_flag("PERSISTENCE", environ.get("PERSISTENCE", "0")),
            parameters=_parameters(environ.get("PREDICTIVE_UNIT_PARAMETERS", "")),
            http_port=_port(environ, "PREDICTIVE_UNIT_HTTP_SERVICE_PORT"),
            grpc_port=_port(environ, "PREDICTIVE_UNIT_GRPC_SERVICE_PORT"),
            metrics_port=_port(environ, "PREDICTIVE_UNIT_METRICS_SERVICE_PORT"),
            frontend=_frontend(environ.get("MODELSHELF_FRONTEND", "")),
            server_dir=server_dir,
            stop_seconds=_seconds(environ.get("MODELSHELF_STOP_SECONDS", "")),
            frontend_args=tuple(frontend_args),
        )

    def steps(self) -> list[Step]:
        """``before-run`` when the server folder has one, then the front end."""
        steps = []
        before_run = self.server_dir / BEFORE_RUN
        if before_run.exists():
            if not os.access(before_run, os.X_OK):
                raise ConfigurationError(
                    "before-run", str(before_run), "an executable file (chmod +x)"
                )
            steps.append(Step(BEFORE_RUN, (str(before_run),), StopPolicy.GROUP))
        steps.append(self.frontend_step())
        return steps

    def frontend_step(self, environment_prefix: Path | None = None) -> Step:
        """The front end's command; inside ``environment_prefix`` (a conda environment that
        before-run made, holding its own seldon-core and modelshelf) when one is given."""
        bin_dir = environment_prefix / "bin" if environment_prefix else None
        if self.frontend == "seldon":
            program = _seldon_microservice(bin_dir)
            service_type = SELDON_SERVICE_TYPE.get(self.service_type, self.service_type)
            policy = StopPolicy.SERVING
        else:
            python = str(bin_dir / "python") if bin_dir else sys.executable
            program = (python, "-m", "modelshelf.serve")
            service_type = self.service_type
            policy = StopPolicy.LEADER
        command = (
            *program,
            # PERSISTENCE=1: a subclass of the user's class whose load() also starts persistence.
            launcher_interface_name(self.model_name) if self.persistence else self.model_name,
            "--service-type",
            service_type,
            "--parameters",
            self.parameters,
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            *self.frontend_args,
        )
        return Step(f"{self.frontend} front end", command, policy)


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
    with _signals_to_pipe() as wakeups:
        _become_subreaper()
        for step in steps:
            if step.stop_policy is not StopPolicy.GROUP:  # the front end, after before-run
                prefix = conda_environment(env)
                if prefix is not None:
                    logger.info("front end runs in the conda environment %s", prefix)
                    step = settings.frontend_step(prefix)
            code, stopped = Supervisor(step, settings.server_dir, env, wakeups).run(
                settings.stop_seconds
            )
            if code != 0 or stopped:
                if code != 0:
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
        if _drain(self.wakeups) & {signal.SIGTERM, signal.SIGINT}:
            return 128 + signal.SIGTERM, True  # asked to stop before this step started
        logger.info("starting %s: %s", self.step.name, " ".join(self.step.command))
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
            for signum in _wait(self.wakeups, timeout):
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._request_stop(signum, stop_seconds)
            if self.stop_started is not None:
                self._advance_stop(stop_seconds)

    def _request_stop(self, signum: int, stop_seconds: float) -> None:
        name = signal.Signals(signum).name
        if self.stop_started is not None:
            logger.warning("%s again: killing %s now", name, self.step.name)
            _signal_all(group_members(self.leader), signal.SIGKILL)
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
        _signal_all(targets, signal.SIGTERM)

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
            _signal_all(members, signal.SIGKILL)
            _signal_all([self.leader], signal.SIGKILL)
        elif (
            self.step.stop_policy is StopPolicy.SERVING
            and not self.second_wave_sent
            and not (self.first_wave - {self.leader}) & set(members)
        ):
            # The serving processes are gone: the helpers they needed can stop now.
            self.second_wave_sent = True
            _signal_all(set(members) - {self.leader}, signal.SIGTERM)

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
                _signal_all(members, signal.SIGTERM)
                signalled = True
            elif time.monotonic() > deadline:
                _signal_all(members, signal.SIGKILL)
            time.sleep(_POLL_SECONDS / 2)
            self._reap()
        self._reap()


# ---------------------------------------------------------------- processes, from /proc


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def serving_processes(pids: Iterable[int]) -> set[int]:
    """The processes among ``pids`` that hold a listening TCP socket."""
    listening = _listening_socket_inodes()
    serving = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in listening:
                    serving.add(pid)
                    break
    return serving


def _listening_socket_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def _signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _become_subreaper() -> None:
    """Orphans of the front end become our children, so we can reap them (as PID 1 does)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


# ---------------------------------------------------------------- signals


@contextlib.contextmanager
def _signals_to_pipe():
    """SIGTERM, SIGINT and SIGCHLD wake the supervisor through a pipe (no polling while
    running); the previous handlers come back afterwards."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    watched = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
    previous = {signum: signal.signal(signum, _noop) for signum in watched}
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield read_end
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(read_end)
        os.close(write_end)


def _noop(signum: int, frame: object) -> None:
    """The wakeup pipe carries the signal; the handler only has to exist."""


def _wait(read_end: int, timeout: float | None) -> set[int]:
    with contextlib.suppress(InterruptedError):
        select.select([read_end], [], [], timeout)
    return _drain(read_end)


def _drain(read_end: int) -> set[int]:
    signals: set[int] = set()
    while True:
        try:
            data = os.read(read_end, 512)
        except BlockingIOError:
            return signals
        if not data:
            return signals
        signals.update(data)


# ---------------------------------------------------------------- environment values


def _api_types(value: str) -> tuple[str, ...]:
    """API_TYPE as Seldon's s2i images take it (REST, GRPC, or both); both are always served."""
    found = tuple(part.strip().upper() for part in value.split(",") if part.strip())
    if not found:
        return API_TYPES
    unknown = [part for part in found if part not in API_TYPES]
    if unknown:
        raise ConfigurationError("API_TYPE", value, "REST, GRPC or REST,GRPC")
    return found


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("", "0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise ConfigurationError(name, value, "0 or 1")


def _parameters(value: str) -> str:
    """PREDICTIVE_UNIT_PARAMETERS: a JSON list of {name, value, type}; checked here so a typo
    stops the container with the variable's name instead of a traceback in the front end."""
    text = value.strip() or "[]"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            "PREDICTIVE_UNIT_PARAMETERS", value, f"a JSON list ({exc.msg} at {exc.pos})"
        ) from None
    if not isinstance(parsed, list) or not all(
        isinstance(item, dict) and "name" in item and "value" in item for item in parsed
    ):
        raise ConfigurationError(
            "PREDICTIVE_UNIT_PARAMETERS",
            value,
            'a JSON list of {"name": …, "value": …, "type": …} objects',
        )
    return text


def _port(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return DEFAULT_PORTS[name]
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigurationError(name, value, "a TCP port number, 1-65535")
    return int(value)


def _seconds(value: str) -> float:
    if not value.strip():
        return DEFAULT_STOP_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ConfigurationError("MODELSHELF_STOP_SECONDS", value, "seconds, more than 0")
    return seconds


def _frontend(value: str) -> str:
    """``modelshelf`` (``modelshelf serve``) when installed, else ``seldon``."""
    text = value.strip().lower()
    if text in ("", "auto"):
        return "modelshelf" if modelshelf_serve_available() else "seldon"
    if text not in FRONTENDS:
        raise ConfigurationError("MODELSHELF_FRONTEND", value, "modelshelf, seldon or auto")
    if text == "modelshelf" and not modelshelf_serve_available():
        raise ConfigurationError(
            "MODELSHELF_FRONTEND", value, "seldon: modelshelf serve is not installed here"
        )
    return text


def modelshelf_serve_available() -> bool:
    """Whether this installation has the ``modelshelf serve`` front end."""
    return importlib.util.find_spec("modelshelf.serve") is not None


def conda_environment(environ: Mapping[str, str]) -> Path | None:
    """With ``MODELSHELF_ENV_MANAGER=conda``, the environment before-run created for the model
    (its path is in ``MODELSHELF_ENV_DIR/conda-prefix``); otherwise ``None``."""
    if environ.get("MODELSHELF_ENV_MANAGER", "").strip().lower() != "conda":
        return None
    from modelshelf.environment import default_env_dir
    from modelshelf.environment.conda import PREFIX_FILE

    record = default_env_dir(environ) / PREFIX_FILE
    if not record.is_file():
        return None
    prefix = Path(record.read_text().strip())
    if not (prefix / "bin" / "python").exists():
        raise ConfigurationError(
            "MODELSHELF_ENV_MANAGER",
            "conda",
            f"a conda environment at {prefix} (named by "
            f"{record}) with bin/python: run before-run again",
        )
    return prefix


def _seldon_microservice(bin_dir: Path | None = None) -> tuple[str, ...]:
    if bin_dir is not None:
        return (str(bin_dir / "seldon-core-microservice"),)
    beside = Path(sys.executable).parent / "seldon-core-microservice"
    found = str(beside) if beside.exists() else shutil.which("seldon-core-microservice")
    if not found:
        raise ConfigurationError(
            "MODELSHELF_FRONTEND",
            "seldon",
            "seldon-core-microservice on PATH (pip install seldon-core)",
        )
    return (found,)
