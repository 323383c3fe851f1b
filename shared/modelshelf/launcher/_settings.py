"""What the container's environment asks for -- validated before anything starts -- and the
commands it makes: ``before-run`` when the server folder has one, then the front end."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from modelshelf.errors import ConfigurationError
from modelshelf.launcher import _values
from modelshelf.launcher._programs import seldon_microservice
from modelshelf.persistence import launcher_interface_name
from modelshelf.serve.options import SERVICE_TYPES

#: seldon-core-microservice's --service-type has no OUTPUT_TRANSFORMER. It serves every endpoint
#: whatever the type (1.18 only validates the value), so the closest type it accepts stands in.
SELDON_SERVICE_TYPE = {"OUTPUT_TRANSFORMER": "TRANSFORMER"}
BEFORE_RUN = "before-run"


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
                source="environment variable",
            )
        service_type = environ.get("SERVICE_TYPE", "MODEL").strip().upper() or "MODEL"
        if service_type not in SERVICE_TYPES:
            raise ConfigurationError(
                "SERVICE_TYPE",
                environ["SERVICE_TYPE"],
                "one of " + ", ".join(SERVICE_TYPES),
                source="environment variable",
            )
        return cls(
            model_name=model_name,
            service_type=service_type,
            api_types=_values.api_types(environ.get("API_TYPE", "")),
            persistence=_values.flag("PERSISTENCE", environ.get("PERSISTENCE", "0")),
            parameters=_values.unit_parameters(environ.get("PREDICTIVE_UNIT_PARAMETERS", "")),
            http_port=_values.port(environ, "PREDICTIVE_UNIT_HTTP_SERVICE_PORT"),
            grpc_port=_values.port(environ, "PREDICTIVE_UNIT_GRPC_SERVICE_PORT"),
            metrics_port=_values.port(environ, "PREDICTIVE_UNIT_METRICS_SERVICE_PORT"),
            frontend=_values.frontend(environ.get("MODELSHELF_FRONTEND", "")),
            server_dir=server_dir,
            stop_seconds=_values.stop_seconds(environ.get("MODELSHELF_STOP_SECONDS", "")),
            frontend_args=tuple(frontend_args),
        )

    def steps(self) -> list[Step]:
        """``before-run`` when the server folder has one, then the front end."""
        steps = []
        before_run = self.server_dir / BEFORE_RUN
        if before_run.exists():
            if not os.access(before_run, os.X_OK):
                raise ConfigurationError(
                    "before-run", str(before_run), "an executable file (chmod +x)", source="file"
                )
            steps.append(Step(BEFORE_RUN, (str(before_run),), StopPolicy.GROUP))
        steps.append(self.frontend_step())
        return steps

    def frontend_step(self, environment_prefix: Path | None = None) -> Step:
        """The front end's command; inside ``environment_prefix`` (a conda environment that
        before-run made, holding its own seldon-core and modelshelf) when one is given."""
        bin_dir = environment_prefix / "bin" if environment_prefix else None
        if self.frontend == "seldon":
            program = seldon_microservice(bin_dir)
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
