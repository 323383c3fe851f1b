"""``modelshelf run``, the images' entry point, with real processes: it reads Seldon's environment,
runs ``before-run``, starts the front end, and on SIGTERM lets an in-flight request finish and
exits 0 with no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from microservice import (
    BIN,
    SERVERS,
    Microservice,
    free_port,
    free_ports,
    running_command,
    stop,
    wait_for_text,
    wait_until_healthy,
)
from modelshelf.errors import ConfigurationError
from modelshelf.launcher import (
    LaunchSettings,
    StopPolicy,
    conda_environment,
    modelshelf_serve_available,
)
from modelshelf.supervision import group_members

MODELSHELF = str(BIN / "modelshelf")

SLOW_MODEL = '''
import time

class SlowModel:
    """Answers after SLOW_SECONDS, so a request is still in flight when SIGTERM arrives."""

    def __init__(self, delay="1.5"):
        self.delay = float(delay)

    def predict(self, X, names=None, meta=None):
        print("SlowModel: in predict", flush=True)  # tests signal the server after this line
        time.sleep(self.delay)
        return X
'''

RECORDING_BEFORE_RUN = """#!/bin/sh
# Records that it ran, and with which parameters, before the front end starts.
printf '%s' "$PREDICTIVE_UNIT_PARAMETERS" > "$RECORD_FILE"
"""


def settings(**env: str) -> LaunchSettings:
    return LaunchSettings.from_environ({"MODEL_NAME": "SKLearnServer", **env}, Path("/srv"))


# ---------------------------------------------------------------- the environment, read


def test_operator_ports_and_defaults():
    default = settings(MODELSHELF_FRONTEND="seldon")
    assert (default.http_port, default.grpc_port, default.metrics_port) == (9000, 9500, 6000)
    moved = settings(
        MODELSHELF_FRONTEND="seldon",
        PREDICTIVE_UNIT_HTTP_SERVICE_PORT="9001",
        PREDICTIVE_UNIT_GRPC_SERVICE_PORT="9501",
        PREDICTIVE_UNIT_METRICS_SERVICE_PORT="6001",
    )
    command = moved.frontend_step().command
    for flag, port in (
        ("--http-port", "9001"),
        ("--grpc-port", "9501"),
        ("--metrics-port", "6001"),
    ):
        assert command[command.index(flag) + 1] == port


def test_seldon_front_end_gets_a_service_type_it_accepts_and_the_parameters():
    parameters = json.dumps([{"name": "model_uri", "value": "/mnt/models", "type": "STRING"}])
    step = settings(
        MODELSHELF_FRONTEND="seldon",
        SERVICE_TYPE="output_transformer",
        PREDICTIVE_UNIT_PARAMETERS=parameters,
    ).frontend_step()
    assert Path(step.command[0]).name == "seldon-core-microservice"
    assert step.command[1] == "SKLearnServer"
    assert step.command[step.command.index("--service-type") + 1] == "TRANSFORMER"
    assert step.command[step.command.index("--parameters") + 1] == parameters
    assert step.stop_policy is StopPolicy.SERVING


@pytest.mark.skipif(not modelshelf_serve_available(), reason="modelshelf serve not installed")
def test_modelshelf_front_end_is_the_default_and_takes_output_transformer():
    step = settings(SERVICE_TYPE="OUTPUT_TRANSFORMER").frontend_step()
    assert step.command[1:3] == ("-m", "modelshelf.serve")
    assert step.command[step.command.index("--service-type") + 1] == "OUTPUT_TRANSFORMER"
    assert step.stop_policy is StopPolicy.LEADER


@pytest.mark.parametrize(
    ("env", "named", "expected"),
    [
        ({"MODEL_NAME": ""}, "MODEL_NAME", "the Python class to serve"),
        ({"SERVICE_TYPE": "PREDICTOR"}, "SERVICE_TYPE", "OUTPUT_TRANSFORMER"),
        ({"API_TYPE": "HTTP"}, "API_TYPE", "REST, GRPC"),
        ({"PERSISTENCE": "yes"}, "PERSISTENCE", "0 or 1"),
        ({"PREDICTIVE_UNIT_PARAMETERS": "[{'name': 1}]"}, "PREDICTIVE_UNIT_PARAMETERS", "JSON"),
        ({"PREDICTIVE_UNIT_PARAMETERS": '{"a": 1}'}, "PREDICTIVE_UNIT_PARAMETERS", "list"),
        ({"PREDICTIVE_UNIT_HTTP_SERVICE_PORT": "70000"}, "HTTP_SERVICE_PORT", "1-65535"),
        ({"MODELSHELF_FRONTEND": "flask"}, "MODELSHELF_FRONTEND", "modelshelf, seldon"),
        ({"MODELSHELF_STOP_SECONDS": "0"}, "MODELSHELF_STOP_SECONDS", "more than 0"),
    ],
)
def test_a_wrong_variable_is_named_with_what_was_expected(env, named, expected):
    with pytest.raises(ConfigurationError) as caught:
        settings(**env)
    assert str(caught.value).startswith("environment variable "), caught.value  # not "parameter"
    assert named in str(caught.value)
    assert expected in str(caught.value)


def test_the_command_exits_2_naming_the_variable(tmp_path):
    result = subprocess.run(
        [MODELSHELF, "run"],
        cwd=tmp_path,
        env={**os.environ, "MODEL_NAME": "SlowModel", "SERVICE_TYPE": "PREDICTOR"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SERVICE_TYPE='PREDICTOR'" in result.stderr


def test_before_run_must_be_executable(tmp_path):
    (tmp_path / "before-run").write_text("#!/bin/sh\n")
    with pytest.raises(ConfigurationError, match="chmod"):
        LaunchSettings.from_environ({"MODEL_NAME": "X"}, tmp_path).steps()


# ---------------------------------------------------------------- real processes


def server_dir(root: Path, before_run: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "SlowModel.py").write_text(SLOW_MODEL)
    if before_run is not None:
        script = root / "before-run"
        script.write_text(before_run)
        script.chmod(0o755)
    return root


def start_launcher(cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [MODELSHELF, "run"],
            cwd=cwd,
            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in (b"Z", b"X"):
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


FRONTENDS = [
    "seldon",
    pytest.param(
        "modelshelf",
        marks=pytest.mark.skipif(
            not modelshelf_serve_available(), reason="modelshelf serve not installed"
        ),
    ),
]


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_sigterm_lets_the_in_flight_request_finish_and_exits_0(tmp_path, frontend):
    record = tmp_path / "before-run.record"
    folder = server_dir(tmp_path / "server", RECORDING_BEFORE_RUN)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    parameters = json.dumps([{"name": "delay", "value": "2", "type": "FLOAT"}])
    env = {
        "MODEL_NAME": "SlowModel",
        "MODELSHELF_FRONTEND": frontend,
        "PREDICTIVE_UNIT_PARAMETERS": parameters,
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(http_port),
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(grpc_port),
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(metrics_port),
        "RECORD_FILE": str(record),
    }
    log = tmp_path / "launcher.log"
    launcher = start_launcher(folder, env, log)
    service = Microservice(launcher, http_port, grpc_port, metrics_port, log)
    try:
        wait_until_healthy(service, timeout=90)
        assert json.loads(record.read_text()) == json.loads(parameters)  # before-run ran first
        children = descendants(launcher.pid)
        assert len(children) >= 3, children  # front end, its workers, gRPC, metrics

        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(
                service.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0, 2.0]]}})
            )
        )
        request.start()
        wait_for_text(log.read_text, "SlowModel: in predict")
        started = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=15)
        elapsed = time.monotonic() - started
        request.join(timeout=15)
    finally:
        service.client.close()
        stop(launcher)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert elapsed < 10, output[-3000:]
    assert len(answers) == 1 and answers[0].status_code == 200, output[-3000:]
    assert answers[0].json()["data"]["ndarray"] == [[1.0, 2.0]]
    assert not {pid for pid in children if Path(f"/proc/{pid}").exists()} & descendants(1)


def wait_for_sleep(launcher: subprocess.Popen, log: Path) -> set[int]:
    """Until before-run's ``sleep`` runs; the launcher's descendants then."""
    deadline = time.monotonic() + 30
    while True:
        children = descendants(launcher.pid)
        for pid in children:
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"):
                    return children
            except OSError:
                continue
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_a_failing_before_run_stops_the_launch_with_its_status(tmp_path):
    marker = tmp_path / "frontend-started"
    folder = server_dir(tmp_path / "server", "#!/bin/sh\necho cannot build >&2\nexit 3\n")
    # If the front end ever started, this class's module would write the marker on import.
    (folder / "SlowModel.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + SLOW_MODEL)
    result = subprocess.run(
        [MODELSHELF, "run"],
        cwd=folder,
        env={**os.environ, "MODEL_NAME": "SlowModel", "MODELSHELF_FRONTEND": "seldon"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "cannot build" in result.stderr
    assert "before-run exited with 3" in result.stderr
    assert not marker.exists()


def test_sigterm_during_before_run_stops_it_at_once(tmp_path):
    folder = server_dir(tmp_path / "server", "#!/bin/sh\nsleep 60 &\nwait\n")
    log = tmp_path / "launcher.log"
    launcher = start_launcher(folder, {"MODEL_NAME": "SlowModel"}, log)
    try:
        children = wait_for_sleep(launcher, log)
        started = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        stop(launcher)
    assert code == 128 + signal.SIGTERM, log.read_text()
    assert elapsed < 3
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def test_a_step_ignoring_sigterm_is_killed_at_the_deadline(tmp_path):
    folder = server_dir(tmp_path / "server", "#!/bin/sh\ntrap '' TERM\nsleep 60 & wait\n")
    log = tmp_path / "launcher.log"
    env = {"MODEL_NAME": "SlowModel", "MODELSHELF_STOP_SECONDS": "1"}
    launcher = start_launcher(folder, env, log)
    try:
        children = wait_for_sleep(launcher, log)  # the shell has set its trap by then
        started = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        stop(launcher)
    assert code == 128 + signal.SIGKILL, log.read_text()
    assert 1 <= elapsed < 4
    assert "killing" in log.read_text()
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    assert not group_members(min(children))


def test_with_the_conda_variant_the_front_end_runs_in_the_environment_before_run_made(tmp_path):
    """before-run (the environment builder) records the conda environment it made; the front end
    then starts from that environment's bin/ (a stand-in front end records how it was called)."""
    prefix = tmp_path / "env" / "conda" / "abc123"
    (prefix / "bin").mkdir(parents=True)
    record = tmp_path / "frontend.record"
    frontend = prefix / "bin" / "seldon-core-microservice"
    frontend.write_text(f'#!/bin/sh\necho "$0 $*" > {record}\n')
    frontend.chmod(0o755)
    (prefix / "bin" / "python").symlink_to("/bin/true")
    before_run = f'#!/bin/sh\nprintf %s {prefix} > "$MODELSHELF_ENV_DIR/conda-prefix"\n'
    folder = server_dir(tmp_path / "server", before_run)
    env = {
        "MODEL_NAME": "SlowModel",
        "MODELSHELF_FRONTEND": "seldon",
        "MODELSHELF_ENV_MANAGER": "conda",
        "MODELSHELF_ENV_DIR": str(tmp_path / "env"),
    }
    result = subprocess.run(
        [MODELSHELF, "run"],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert record.read_text().startswith(f"{frontend} SlowModel --service-type MODEL")
    assert f"conda environment {prefix}" in result.stderr

    del env["MODELSHELF_ENV_MANAGER"]  # the pip variant: same folder, the image's own front end
    assert conda_environment(env) is None


# ---------------------------------------------------------------- what KServe passes


def kserve_print(env: dict[str, str], *args: str) -> str:
    """``modelshelf run --print`` in the sklearn server's folder, as a runtime's container."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTIVE_UNIT_")}
    full_env = {**full_env, "MODEL_NAME": "SKLearnServer", **env}
    for name in ("HTTP_PORT", "GRPC_PORT", "STORAGE_URI"):
        if name not in env:
            full_env.pop(name, None)
    result = subprocess.run(
        [MODELSHELF, "run", "--print", *args],
        cwd=SERVERS / "sklearnserver",
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def model_uri_of(command: str) -> str:
    parameters = json.loads(command.split("--parameters ", 1)[1].split(" --http-port", 1)[0])
    return next(p["value"] for p in parameters if p["name"] == "model_uri")


IMAGE_PARAMETERS = '[{"name":"model_uri","value":"/mnt/models","type":"STRING"}]'


def test_a_runtimes_arguments_become_the_ports_model_and_name():
    args = ("--model_name=iris", "--model_dir=/mnt/models")  # {{.Name}} filled by KServe
    command = kserve_print(
        {"PREDICTIVE_UNIT_PARAMETERS": IMAGE_PARAMETERS},
        *args,
        "--http_port=8080",
        "--grpc_port",
        "8081",
    )
    assert "--http-port 8080 --grpc-port 8081" in command
    assert command.rstrip().endswith("--model-name iris")
    assert model_uri_of(command) == "/mnt/models"
    seldon = kserve_print({"MODELSHELF_FRONTEND": "seldon"}, *args, "--http_port=8080")
    assert "seldon-core-microservice" in seldon and "--http-port 8080" in seldon
    assert "--model-name" not in seldon  # seldon-core-microservice would refuse it


def test_kserve_images_variables_and_a_storage_uri():
    command = kserve_print(
        {
            "PREDICTIVE_UNIT_PARAMETERS": IMAGE_PARAMETERS,
            "HTTP_PORT": "8085",
            "GRPC_PORT": "8086",
            "STORAGE_URI": "s3://models/iris",
        }
    )
    assert "--http-port 8085 --grpc-port 8086" in command
    assert model_uri_of(command) == "s3://models/iris"  # /mnt/models is not filled here
    # Seldon's variables win over KServe images' ones; a user's own model_uri is kept
    command = kserve_print(
        {
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": "9000",
            "HTTP_PORT": "8085",
            "PREDICTIVE_UNIT_PARAMETERS": '[{"name":"model_uri","value":"gs://b/m","type":"STRING"}]',
        },
        "--model_dir=/mnt/models",
    )
    assert "--http-port 9000" in command
    assert model_uri_of(command) == "gs://b/m"


def test_a_filled_mount_stands_for_the_storage_uri(tmp_path):
    import argparse

    from modelshelf.launcher._kserve import read_kserve_arguments

    empty = argparse.Namespace()
    environ = {"STORAGE_URI": "s3://models/iris", "PREDICTIVE_UNIT_PARAMETERS": IMAGE_PARAMETERS}
    mount = tmp_path / "mnt-models"
    mount.mkdir()
    folded = read_kserve_arguments(empty, environ, mount=mount)
    assert "s3://models/iris" in folded.environ["PREDICTIVE_UNIT_PARAMETERS"]
    (mount / "model.joblib").write_bytes(b"x")  # the storage initializer ran
    folded = read_kserve_arguments(empty, environ, mount=mount)
    assert json.loads(folded.environ["PREDICTIVE_UNIT_PARAMETERS"])[0]["value"] == str(mount)


def test_the_sklearn_image_entry_point_serves_kserve_v1_with_a_runtimes_arguments(
    sklearn_models,
):
    http_port, grpc_port, metrics_port = free_ports(3)
    env = {
        "MODEL_NAME": "SKLearnServer",
        "PREDICTIVE_UNIT_PARAMETERS": IMAGE_PARAMETERS,
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(metrics_port),
    }
    args = [
        "--model_name=iris",
        f"--model_dir={sklearn_models['iris']}",
        f"--http_port={http_port}",
        f"--grpc_port={grpc_port}",
    ]
    with running_command(
        [MODELSHELF, "run", *args],
        SERVERS / "sklearnserver",
        env,
        http_port,
        grpc_port,
        metrics_port,
        health_path="/v2/health/ready",
    ) as service:
        answer = service.post("/v1/models/iris:predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert answer.status_code == 200, answer.text
        import joblib

        model = joblib.load(sklearn_models["iris"] / "model.joblib")
        np.testing.assert_allclose(
            answer.json()["predictions"], model.predict_proba([[5.1, 3.5, 1.4, 0.2]]), rtol=1e-12
        )
        assert service.get("/v2/models/iris/ready").status_code == 200
