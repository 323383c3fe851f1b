"""``modelshelf env``: where the model comes from (argument, or Seldon's parameters), exit codes."""

from __future__ import annotations

import pytest

from modelshelf.cli import main
from modelshelf.environment import FAILURE_MARK, check_before_run
from modelshelf.errors import ModelLoadError


@pytest.fixture(autouse=True)
def env_dir(tmp_path, monkeypatch):
    """Every test's own environment folder: a failure mark must not reach /tmp/modelshelf-env."""
    folder = tmp_path / "env-dir"
    monkeypatch.setenv("MODELSHELF_ENV_DIR", str(folder))
    return folder


def satisfied_model(folder):
    folder.mkdir()
    (folder / "requirements.txt").write_text("numpy\npyyaml>=5\n")
    return folder


def test_model_argument_reports_and_exits_0(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MODELSHELF_ENV_DIR", str(tmp_path / "env"))
    assert main(["env", str(satisfied_model(tmp_path / "m"))]) == 0
    out = capsys.readouterr().out
    assert "satisfied  numpy" in out and "2 satisfied, 0 installed" in out


def test_model_uri_from_seldon_parameters(tmp_path, capsys, monkeypatch):
    folder = satisfied_model(tmp_path / "m")
    monkeypatch.setenv(
        "PREDICTIVE_UNIT_PARAMETERS",
        f'[{{"name": "model_uri", "value": "{folder}", "type": "STRING"}},'
        '{"name": "method", "value": "predict", "type": "STRING"}]',
    )
    assert main(["env", "--env-dir", str(tmp_path / "env")]) == 0
    assert f"model environment of {folder}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (None, "PREDICTIVE_UNIT_PARAMETERS"),
        ("not json", "a JSON list"),
        ('[{"name": "method", "value": "predict", "type": "STRING"}]', "a model_uri parameter"),
    ],
)
def test_missing_or_bad_parameters_exit_1_with_the_cause(monkeypatch, capsys, parameters, message):
    if parameters is None:
        monkeypatch.delenv("PREDICTIVE_UNIT_PARAMETERS", raising=False)
    else:
        monkeypatch.setenv("PREDICTIVE_UNIT_PARAMETERS", parameters)
    assert main(["env"]) == 1
    assert message in capsys.readouterr().err


def test_missing_model_folder_exits_1(tmp_path, capsys):
    assert main(["env", str(tmp_path / "nothing-here")]) == 1
    assert "nothing-here" in capsys.readouterr().err


def test_a_failure_leaves_its_mark_until_a_run_succeeds(tmp_path, capsys, env_dir):
    model = tmp_path / "m"
    assert main(["env", str(model)]) == 1  # the folder does not exist yet
    error = capsys.readouterr().err
    mark = (env_dir / FAILURE_MARK).read_text()
    assert mark.splitlines()[-1] in error
    assert str(model) in mark
    with pytest.raises(ModelLoadError, match=r"before-run .* did not succeed"):
        check_before_run(str(model), env_dir)
    check_before_run(str(tmp_path / "another-model"), env_dir)  # not its failure: loads
    satisfied_model(model)
    assert main(["env", str(model)]) == 0
    assert not (env_dir / FAILURE_MARK).exists()
