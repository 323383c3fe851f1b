"""The ``modelshelf`` console script as a user runs it."""

import subprocess

from microservice import BIN


def test_version_lists_modelshelf_and_seldon_core():
    out = subprocess.run(
        [str(BIN / "modelshelf"), "version"], capture_output=True, text=True, check=True
    ).stdout
    assert "modelshelf 0.1.0" in out
    assert "seldon-core 1.18.2" in out


def test_version_lists_every_servers_framework():
    """LightGBM (and the full ``mlflow`` beside ``mlflow-skinny``) were left out of the list."""
    from importlib.metadata import version

    out = subprocess.run(
        [str(BIN / "modelshelf"), "version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for package in ("scikit-learn", "xgboost-cpu", "lightgbm", "mlflow-skinny", "mlflow"):
        assert f"{package} {version(package)}" in out


def test_unknown_command_exits_2_with_usage():
    result = subprocess.run([str(BIN / "modelshelf"), "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_the_container_entry_points_load_neither_seldon_core_nor_flask(tmp_path):
    """``modelshelf run`` is PID 1 and ``modelshelf fetch`` the init container: each import of
    seldon-core (Flask, gunicorn, protobuf, its TensorFlow notice) would only delay the start."""
    script = (
        "import sys\n"
        "from modelshelf import cli\n"
        "for argv in (['run', '--print'], ['fetch', '--help']):\n"
        "    try:\n"
        "        cli.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "loaded = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(loaded & {'seldon_core', 'flask', 'gunicorn'}))\n"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "MODEL_NAME": "AnyModel"},
        timeout=60,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
