"""``bench.images.cold_start``: ``podman run`` of a built image to its first correct prediction,
on the real image (skipped where podman or the image is missing: ``make images`` builds it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from bench import images

IMAGE = images.image_name("sklearnserver")


def _podman_can_run() -> str | None:
    """Why this test cannot run here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed"
    if not os.environ.get("CONTAINERS_CONF"):
        return "CONTAINERS_CONF is not set (shared/images/local-base-image.sh exports it)"
    if images.size_of("podman", IMAGE) is None:
        return f"{IMAGE} is not built (make images)"
    return None


@pytest.mark.skipif(_podman_can_run() is not None, reason=str(_podman_can_run()))
def test_the_image_answers_and_the_container_is_removed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    joblib.dump(LogisticRegression().fit(X, X[:, 0] > 0), tmp_path / "model.joblib")
    tmp_path.chmod(0o755)  # the container's user reads the mounted folder
    body = json.dumps({"data": {"ndarray": [[0.2, -0.1, 0.4]]}}).encode()
    answers: list[dict] = []

    def check(answer: dict) -> str | None:
        answers.append(answer)
        return None if len(answer["data"]["ndarray"]) == 1 else "not one row"

    parameters = [{"name": "model_uri", "value": images.MODEL_MOUNT, "type": "STRING"}]
    seconds = images.cold_start("podman", IMAGE, str(tmp_path), parameters, body, check)

    assert 0 < seconds < 120
    assert len(answers[-1]["data"]["ndarray"][0]) == 2  # predict_proba of two classes
    left = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    ).stdout
    assert f"modelshelf-bench-cold-{os.getpid()}" not in left
