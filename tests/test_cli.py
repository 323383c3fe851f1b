"""The ``modelshelf`` console script as a user runs it."""

import subprocess

from microservice import BIN


def test_version_lists_modelshelf_and_seldon_core():
    out = subprocess.run(
        [str(BIN / "modelshelf"), "version"], capture_output=True, text=True, check=True
    ).stdout
    assert "modelshelf 0.1.0" in out
    assert "seldon-core 1.18.2" in out


def test_unknown_command_exits_2_with_usage():
    result = subprocess.run([str(BIN / "modelshelf"), "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
