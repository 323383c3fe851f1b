"""``modelshelf env [MODEL]``: install what an MLflow model needs before its server starts.

The MLflow server's ``before-run`` runs this with no argument: like the server, it then takes
``model_uri`` from ``PREDICTIVE_UNIT_PARAMETERS`` and downloads it into the shared cache, so the
server does not download it again. Exit status 1, with the cause on one line, when the environment
cannot be built; the report goes to standard output. Until it succeeds, the environment folder
holds a failure mark (``before-run-failed``) that stops the MLflow server from loading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from modelshelf.errors import ConfigurationError, ModelshelfError
from modelshelf.redaction import redact_text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "env",
        help="install an MLflow model's requirements into the server's environment folder",
        description=__doc__,
    )
    parser.add_argument(
        "model",
        nargs="?",
        help="model folder or URI (default: model_uri from PREDICTIVE_UNIT_PARAMETERS)",
    )
    parser.add_argument("--env-dir", type=Path, help="overrides MODELSHELF_ENV_DIR")
    parser.add_argument("--wheels-dir", type=Path, help="overrides MODELSHELF_WHEELS_DIR")
    parser.add_argument("--strict", action="store_true", help="as MODELSHELF_ENV_STRICT=1")
    parser.add_argument("--offline", action="store_true", help="as MODELSHELF_ENV_OFFLINE=1")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelshelf.environment import Settings, build, default_env_dir, record_before_run
    from modelshelf.environment.model_location import model_folder

    env_dir = args.env_dir or default_env_dir()
    try:
        uri = args.model or model_uri_from_parameters()
    except ModelshelfError as exc:  # no model named: the server cannot start either
        print(f"modelshelf env: {exc}", file=sys.stderr)
        return 1
    try:
        record_before_run(env_dir, uri, "before-run started and did not finish")
        settings = Settings.from_environ()
        settings = replace(
            settings,
            env_dir=env_dir,
            wheels_dir=args.wheels_dir or settings.wheels_dir,
            strict=args.strict or settings.strict,
            offline=args.offline or settings.offline,
        )
        report = build(model_folder(uri), settings)
    except (ModelshelfError, OSError) as exc:  # OSError: e.g. an unwritable env folder
        print(f"modelshelf env: {exc}", file=sys.stderr)
        _record_failure(env_dir, uri, str(exc))
        return 1
    record_before_run(env_dir, uri, None)
    print(redact_text("\n".join(report.lines())), flush=True)
    return 0


def _record_failure(env_dir: Path, uri: str, message: str) -> None:
    from modelshelf.environment import record_before_run

    try:
        record_before_run(env_dir, uri, message)
    except OSError as exc:
        print(f"modelshelf env: cannot leave the failure mark in {env_dir}: {exc}", file=sys.stderr)


def model_uri_from_parameters(environ: dict[str, str] | None = None) -> str:
    """``model_uri`` from Seldon's ``PREDICTIVE_UNIT_PARAMETERS`` (a JSON list of
    ``{name, value, type}``), exactly as the server receives it."""
    env = os.environ if environ is None else environ
    text = env.get("PREDICTIVE_UNIT_PARAMETERS", "")
    if not text:
        raise ConfigurationError(
            "PREDICTIVE_UNIT_PARAMETERS",
            "",
            "a model argument, or the server's parameters",
            source="environment variable",
        )
    try:
        parameters = json.loads(text)
        values = {p["name"]: p["value"] for p in parameters}
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError(
            "PREDICTIVE_UNIT_PARAMETERS",
            text,
            'a JSON list of {"name", "value", "type"}',
            source="environment variable",
        ) from exc
    if not values.get("model_uri"):
        raise ConfigurationError(
            "PREDICTIVE_UNIT_PARAMETERS",
            text,
            "a model_uri parameter",
            source="environment variable",
        )
    return str(values["model_uri"])
