"""``images/constraints.txt`` pins what the suite tests: every distribution the images install at
the version this virtualenv has (issue 19: an image built later got mlflow-skinny 3.18 and pandas
3.0 while the suite tested mlflow 3.2 and pandas 2.x). Runs in plain ``make test`` (no images)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from microservice import REPO
from modelshelf.registry import SERVERS

SCRIPT = REPO / "images" / "constraints.py"
COMMITTED = REPO / "images" / "constraints.txt"


def pinned() -> dict[str, str]:
    lines = [line for line in COMMITTED.read_text().splitlines() if not line.startswith("#")]
    return dict(line.split("==", 1) for line in lines if line.strip())


@pytest.mark.parametrize(
    "name",
    ["mlflow-skinny", "pandas", "numpy", "scikit-learn", "xgboost-cpu", "seldon-core", "flask"],
)
def test_the_packages_the_issue_names_are_pinned_at_the_tested_version(name):
    assert pinned().get(name) == importlib.metadata.version(name)


@pytest.mark.parametrize(
    "package",
    [package for server in SERVERS for package in server.framework_packages],
)
def test_every_registered_servers_framework_is_pinned_at_the_tested_version(package):
    # server.Dockerfile installs "${EXTRA}": the extras come from the registry, not the Dockerfile
    assert pinned().get(package) == importlib.metadata.version(package)


def test_the_committed_file_is_what_the_generator_writes_from_this_virtualenv():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_names_a_pin_that_differs_from_the_tested_version(tmp_path):
    stale = tmp_path / "constraints.txt"
    stale.write_text(COMMITTED.read_text().replace("\npandas==", "\npandas==3.0.0\n#"))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--file", str(stale)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    tested = importlib.metadata.version("pandas")
    assert result.returncode == 1
    assert f"pandas: 3.0.0 in constraints.txt, {tested} tested" in result.stdout
