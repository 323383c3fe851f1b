"""The conda variant with a stand-in ``conda`` executable (no conda channel is reachable here):
the spec it writes, the command it runs, reuse by the spec's hash, and failures."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
import yaml

from microservice import BIN, SERVERS, seldon_parameters
from modelshelf.environment import EnvironmentBuildError, Settings, build
from modelshelf.environment.conda import COMPLETE_MARK, PREFIX_FILE, server_requirements

FAKE_CONDA = """#!/bin/sh
# Records its arguments; makes the --prefix folder as conda would; fails when told to.
echo "$@" >> "{record}"
if [ -n "$FAKE_CONDA_FAIL" ]; then echo "ResolvePackageNotFound: - $FAKE_CONDA_FAIL" >&2; exit 1; fi
while [ $# -gt 0 ]; do
  if [ "$1" = "--prefix" ]; then
    mkdir -p "$2/conda-meta" "$2/bin"
    printf '#!/bin/sh\necho "inside $0: $@"\n' > "$2/bin/seldon-core-microservice"
    chmod +x "$2/bin/seldon-core-microservice"
  fi
  shift
done
"""

CONDA_YAML = """\
name: mlflow-env
channels: [conda-forge]
dependencies:
- python=3.11.2
- pip:
  - shelftiny==0.1.0
- scikit-learn=1.9
"""


@pytest.fixture
def fake_conda(tmp_path, monkeypatch):
    record = tmp_path / "conda-calls.txt"
    exe = tmp_path / "bin" / "conda"
    exe.parent.mkdir()
    exe.write_text(FAKE_CONDA.format(record=record))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("MODELSHELF_CONDA_EXE", raising=False)
    return record


def model(folder, conda_yaml: str = CONDA_YAML):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n    env: conda.yaml\n")
    (folder / "conda.yaml").write_text(conda_yaml)
    return folder


def test_creates_from_the_models_spec_plus_the_servers_and_reuses_it_by_hash(tmp_path, fake_conda):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    settings = Settings(env_dir=tmp_path / "env", wheels_dir=wheels, manager="conda")
    report = build(model(tmp_path / "m"), settings)

    calls = fake_conda.read_text().splitlines()
    prefix = report.conda_prefix
    spec_file = prefix.parent / f"{prefix.name}.yaml"
    assert calls == [f"env create --prefix {prefix} --file {spec_file}"]
    assert (prefix / COMPLETE_MARK).is_file()
    assert (settings.env_dir / PREFIX_FILE).read_text() == str(prefix)
    spec = yaml.safe_load(spec_file.read_text())
    assert "name" not in spec and spec["channels"] == ["conda-forge"]
    deps = spec["dependencies"]
    assert deps[:2] == ["pip", "python=3.11.2"] and "scikit-learn=1.9" in deps
    pip = deps[2]["pip"]
    assert pip[0] == f"--find-links {wheels}" and "shelftiny==0.1.0" in pip
    assert set(server_requirements()) <= set(pip)
    assert any(line.startswith("seldon-core==") for line in pip)
    assert f"conda environment {prefix}" in "\n".join(report.lines())

    again = build(model(tmp_path / "m2"), settings)  # same spec: same environment, no conda run
    assert again.conda_prefix == prefix and again.installer == "conda (reused)"
    assert len(fake_conda.read_text().splitlines()) == 1

    changed = build(model(tmp_path / "m3", CONDA_YAML.replace("0.1.0", "0.2.0")), settings)
    assert changed.conda_prefix != prefix
    assert len(fake_conda.read_text().splitlines()) == 2


def test_micromamba_syntax(tmp_path, fake_conda, monkeypatch):
    micromamba = fake_conda.parent / "bin" / "micromamba"
    micromamba.write_text((fake_conda.parent / "bin" / "conda").read_text())
    micromamba.chmod(0o755)
    settings = Settings(env_dir=tmp_path / "env", wheels_dir=tmp_path / "none", manager="conda")
    report = build(model(tmp_path / "m"), settings)
    assert fake_conda.read_text().startswith(f"create --yes --prefix {report.conda_prefix} --file")


def test_failure_stops_with_condas_message_and_leaves_nothing_to_reuse(
    tmp_path, fake_conda, monkeypatch
):
    monkeypatch.setenv("FAKE_CONDA_FAIL", "scikit-learn=1.9")
    settings = Settings(env_dir=tmp_path / "env", wheels_dir=tmp_path / "none", manager="conda")
    with pytest.raises(EnvironmentBuildError, match=r"ResolvePackageNotFound: - scikit-learn=1\.9"):
        build(model(tmp_path / "m"), settings)
    assert not list((tmp_path / "env" / "conda").glob("*/conda-meta"))


def test_no_conda_executable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("MODELSHELF_CONDA_EXE", raising=False)
    settings = Settings(env_dir=tmp_path / "env", wheels_dir=tmp_path / "none", manager="conda")
    with pytest.raises(EnvironmentBuildError, match="no micromamba, mamba or conda on PATH"):
        build(model(tmp_path / "m"), settings)


def test_the_variants_run_script_starts_the_server_from_the_environment(tmp_path, fake_conda):
    folder = model(tmp_path / "m")
    env = {
        **os.environ,
        "PATH": f"{os.environ['PATH']}{os.pathsep}{BIN}",  # the fake conda first, then modelshelf
        "PREDICTIVE_UNIT_PARAMETERS": seldon_parameters(model_uri=folder),
        "MODELSHELF_ENV_DIR": str(tmp_path / "env"),
        "MODELSHELF_WHEELS_DIR": str(tmp_path / "none"),
    }
    command = [str(SERVERS / "mlflowserver-conda" / "run"), "--service-type", "MODEL"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    prefix = (tmp_path / "env" / "conda-prefix").read_text()
    assert "conda environment " + prefix in result.stdout  # before-run's report
    assert f"inside {prefix}/bin/seldon-core-microservice: MLFlowServer --service-type MODEL" in (
        result.stdout
    )
