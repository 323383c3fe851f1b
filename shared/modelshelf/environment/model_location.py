"""Where a model's folder is, for the MLflow server and its before-run step alike.

Local paths and ``s3://`` / ``gs://`` / ``http(s)://`` go through ``modelshelf.storage.download``
(one cached download per URI); so does a logged model's artifact location in such a store. MLflow
URIs -- every form MLflow 3 gives users: ``models:/<model_id>`` (``models:/m-…``, what
``log_model(name=…)`` returns), ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
``models:/NAME/latest``, ``models:/NAME/STAGE``, ``runs:/RUN_ID/PATH`` and
``mlflow-artifacts:/…`` (the tracking server's artifact proxy) -- are resolved through the
tracking server (``MLFLOW_TRACKING_URI``) and downloaded once into the same cache folder, keyed by
the resolved version, so the server finds what before-run fetched and an alias moved later is
fetched anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelshelf import storage
from modelshelf.errors import StorageError

MLFLOW_SCHEMES = ("models:", "runs:", "mlflow-artifacts:")
SOURCE_FILE = ".modelshelf-mlflow-source.json"

_VERSIONED = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")


@dataclass(frozen=True)
class RegisteredModel:
    """The registry entry a ``models:/`` URI named (for the metadata's name and version)."""

    name: str
    version: str


def is_mlflow_uri(uri: str) -> bool:
    return uri.startswith(MLFLOW_SCHEMES)


def model_folder(uri: str) -> Path:
    """The local folder holding the model ``uri`` names; downloaded once, then reused."""
    if not is_mlflow_uri(uri):
        return storage.download(uri)
    resolved = _resolve(uri)
    target = storage.cache_root() / _cache_name(resolved)
    if (target / "MLmodel").is_file():
        return target
    with _locked(target.with_name(target.name + ".lock")):
        if (target / "MLmodel").is_file():
            return target
        _download(uri, resolved, target)
    return target


def registered_model(folder: Path) -> RegisteredModel | None:
    """The registry name and version of a folder ``model_folder`` fetched, if it came from one."""
    source = folder / SOURCE_FILE
    if not source.is_file():
        return None
    data = json.loads(source.read_text())
    if data.get("name") and data.get("version"):
        return RegisteredModel(str(data["name"]), str(data["version"]))
    return None


def turn_off_mlflow_telemetry() -> None:
    """Call before importing MLflow: from 3.2 its import starts a thread that fetches a
    telemetry config over the network and later sends usage records. A model server or storage
    initializer makes no calls home, and no thread should run across seldon-core's fork.
    ``MLFLOW_DISABLE_TELEMETRY=false`` in the environment keeps MLflow's default."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _resolve(uri: str) -> str:
    """``uri`` with a fixed version: ``models:/NAME@ALIAS``, ``/latest`` and ``/STAGE`` become
    ``models:/NAME/VERSION``; fixed URIs (a version, a model id, a run's or the artifact
    proxy's path) are returned as they are without asking the server. The forms are MLflow's
    own: one path part without ``@`` is a logged model's id, two parts a name and a version
    (digits), ``latest`` (any case) or a stage."""
    if uri.startswith("runs:"):
        return _logged_model_of_run(uri) or uri
    if not uri.startswith("models:") or _VERSIONED.match(uri):
        return uri
    name_and_ref = uri[len("models:") :].strip("/")
    if not name_and_ref or name_and_ref.count("/") > 1:
        raise StorageError(
            uri,
            "expected models:/<model_id>, models:/NAME/VERSION, NAME/STAGE, NAME/latest "
            "or NAME@ALIAS",
        )
    if "/" not in name_and_ref and "@" not in name_and_ref:
        return f"models:/{name_and_ref}"  # a logged model's id (models:/m-…): immutable
    turn_off_mlflow_telemetry()
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        if "@" in name_and_ref:
            name, alias = name_and_ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias).version
        else:
            name, _, stage = name_and_ref.partition("/")
            stages = [] if stage.lower() == "latest" else [stage]
            found = client.get_latest_versions(name, stages=stages)
            if not found:
                raise StorageError(uri, f"registered model {name!r} has no version {stage!r}")
            version = max(found, key=lambda v: int(v.version)).version
    except MlflowException as exc:
        raise StorageError(uri, f"the tracking server could not resolve it: {exc.message}") from exc
    return f"models:/{name}/{version}"


def _logged_model_of_run(uri: str) -> str | None:
    """``models:/<model_id>`` of the model a ``runs:/RUN_ID/NAME`` URI names, when MLflow 3
    logged it as a logged model (its files are then not among the run's artifacts: MLflow's own
    download looks there first, and against an artifact proxy its retries of that miss took
    four minutes); ``None`` for anything else (a model logged by MLflow 2 as run artifacts, a
    path inside a model, a tracking server without logged models)."""
    parts = uri[len("runs:") :].strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        return None
    run_id, name = parts
    turn_off_mlflow_telemetry()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        experiment_id = client.get_run(run_id).info.experiment_id
        found = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"name = '{name}'"
        )
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" and "run" in exc.message.lower():
            raise StorageError(uri, f"the tracking server has no such run: {exc.message}") from exc
        return None
    except AttributeError:  # an MLflow 2 client: no logged models
        return None
    for model in found:
        if model.source_run_id == run_id:
            return f"models:/{model.model_id}"
    return None


def _download(uri: str, resolved: str, target: Path) -> None:
    turn_off_mlflow_telemetry()
    try:
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException
    except ImportError as exc:  # pragma: no cover - the MLflow server image has mlflow
        raise StorageError(uri, "MLflow URIs need the mlflow package") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=str(staging))
            )
        except MlflowException as exc:
            raise StorageError(uri, f"MLflow could not download it: {exc.message}") from exc
        if not (local / "MLmodel").is_file():
            raise StorageError(
                uri, f"no MLmodel file in what it names ({sorted(p.name for p in local.iterdir())})"
            )
        match = _VERSIONED.match(resolved)
        source = {"uri": uri, "resolved": resolved}
        if match:
            source.update(name=match["name"], version=match["version"])
        elif resolved.startswith("models:/"):
            source.update(model_id=resolved[len("models:/") :])
        (local / SOURCE_FILE).write_text(json.dumps(source))
        local.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cache_name(resolved: str) -> str:
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.split(":", 1)[1])[:48].strip("._")
    return f"mlflow-{readable or 'model'}-{digest}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One download per target across processes (before-run, workers, the gRPC child)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
