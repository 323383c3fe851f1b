"""Issue 19.7: a server started after a failed ``before-run`` does not report ready; the conda
variant's errors are one line. Real processes: the ``before-run`` scripts and
``seldon-core-microservice MLFlowServer``."""

from __future__ import annotations

import pickle

import pytest
import yaml

from microservice import SERVERS, run_to_exit, running_microservice, seldon_parameters
from models import IRIS_X, iris_classifier
from modelshelf.environment import FAILURE_MARK
from modelshelf.environment.conda import environment_spec
from modelshelf.environment.sources import read_model_requirements

pytestmark = pytest.mark.timeout(300)

MLMODEL = """\
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
    python_version: 3.11.7
    env:
      virtualenv: python_env.yaml
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
"""


def mlflow_model(folder, requirements: str):
    """An MLflow sklearn-flavor folder, written by hand (MLflow is not needed to serve it)."""
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(MLMODEL)
    (folder / "model.pkl").write_bytes(pickle.dumps(iris_classifier()))
    (folder / "python_env.yaml").write_text("python: 3.11\ndependencies: [-r requirements.txt]\n")
    (folder / "requirements.txt").write_text(requirements)
    return folder


def test_a_server_whose_before_run_failed_does_not_become_ready(tmp_path):
    folder = mlflow_model(tmp_path / "model", "numpy\nshelfmissing==9.9\n")
    env = {
        "MODELSHELF_ENV_DIR": str(tmp_path / "env"),
        "MODELSHELF_WHEELS_DIR": str(tmp_path / "no-wheels"),
        "MODELSHELF_ENV_OFFLINE": "1",
        "PREDICTIVE_UNIT_PARAMETERS": seldon_parameters(model_uri=folder),
    }
    before = run_to_exit([str(SERVERS / "mlflowserver" / "before-run")], tmp_path, env=env)
    assert before.returncode == 1
    assert "Traceback" not in before.stdout
    assert (tmp_path / "env" / FAILURE_MARK).is_file()

    parameters = seldon_parameters(model_uri=folder)
    command = [
        "seldon-core-microservice", "MLFlowServer", "--service-type", "MODEL",
        "--parameters", parameters, "--http-port", "0", "--grpc-port", "0",
        "--metrics-port", "0",
    ]  # fmt: skip
    server = run_to_exit(command, SERVERS / "mlflowserver", timeout=120, env=env)
    assert server.returncode != 0
    assert "before-run (modelshelf env) did not succeed" in server.stdout
    assert "cannot install shelfmissing==9.9" in server.stdout

    (folder / "requirements.txt").write_text("numpy\n")
    again = run_to_exit([str(SERVERS / "mlflowserver" / "before-run")], tmp_path, env=env)
    assert again.returncode == 0, again.stdout
    assert not (tmp_path / "env" / FAILURE_MARK).exists()
    with running_microservice("MLFlowServer", parameters, env=env) as service:
        answer = service.client.post("/predict", json={"data": {"ndarray": IRIS_X[:2].tolist()}})
        assert answer.status_code == 200, answer.text


def test_a_missing_conda_executable_is_one_line(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "conda.yaml").write_text("dependencies:\n- python=3.11\n- pip:\n  - numpy\n")
    env = {
        "MODELSHELF_ENV_DIR": str(tmp_path / "env"),
        "MODELSHELF_CONDA_EXE": "/nonexistent/micromamba",
        "PREDICTIVE_UNIT_PARAMETERS": seldon_parameters(model_uri=folder),
    }
    result = run_to_exit([str(SERVERS / "mlflowserver-conda" / "before-run")], tmp_path, env=env)
    assert result.returncode == 1
    assert result.stdout.strip().splitlines() == [
        "modelshelf env: cannot install the model's requirements: "
        "MODELSHELF_CONDA_EXE=/nonexistent/micromamba: no such executable"
    ]
    assert (tmp_path / "env" / FAILURE_MARK).is_file()


@pytest.mark.parametrize("pip", ["pip", "pip<=24.0", "conda-forge::pip>=23", "pip=24.0"])
def test_the_conda_spec_lists_pip_once(tmp_path, pip):
    (tmp_path / "conda.yaml").write_text(
        f"dependencies:\n- python=3.11\n- {pip}\n- pip:\n  - numpy\n"
    )
    spec = environment_spec(read_model_requirements(tmp_path, prefer="conda"), tmp_path / "none")
    names = [d for d in spec["dependencies"] if isinstance(d, str) and "pip" in d]
    assert names == [pip], yaml.safe_dump(spec)
