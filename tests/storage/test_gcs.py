"""``download()`` from a real GCS endpoint (gcp-storage-emulator)."""

from __future__ import annotations

import subprocess

import pytest

from microservice import BIN
from modelshelf.errors import StorageNotFoundError, StorageUnreachableError
from modelshelf.storage import download

BUCKET = "gcs-models"
MODEL = {"model.joblib": b"pretend pickle" * 500, "nested/deeper/config.json": b"{}"}


@pytest.fixture(scope="module")
def bucket(gcs_server):
    objects = {f"xgb/{name}": data for name, data in MODEL.items()}
    gcs_server.upload(BUCKET, {**objects, "xgb-v2/model.joblib": b"the other model"})
    return gcs_server


def test_prefix_downloads_nested_objects_within_the_prefix(bucket, env, tree):
    env(bucket.env)
    folder = download(f"gs://{BUCKET}/xgb")
    assert tree(folder) == MODEL


def test_single_object_and_an_unchanged_repeat(bucket, env, tree):
    env(bucket.env)
    folder = download(f"gs://{BUCKET}/xgb/model.joblib")
    assert tree(folder) == {"model.joblib": MODEL["model.joblib"]}
    inode = (folder / "model.joblib").stat().st_ino
    assert download(f"gs://{BUCKET}/xgb/model.joblib") == folder
    assert (folder / "model.joblib").stat().st_ino == inode  # same generation: not fetched
    bucket.upload(BUCKET, {"xgb/model.joblib": b"retrained"})  # a new generation
    download(f"gs://{BUCKET}/xgb/model.joblib")
    assert (folder / "model.joblib").read_bytes() == b"retrained"
    bucket.upload(BUCKET, {"xgb/model.joblib": MODEL["model.joblib"]})


def test_rclone_style_gs_uri(bucket, env, tree, tmp_path):
    env(
        {
            **bucket.env,
            "RCLONE_CONFIG_GS_TYPE": "google cloud storage",
            "RCLONE_CONFIG_GS_ANONYMOUS": "true",
        }
    )
    dest = download(f"gs:{BUCKET}/xgb", tmp_path / "dest")
    assert {k: v for k, v in tree(dest).items() if not k.startswith(".modelshelf")} == MODEL


def test_missing_bucket_and_object(bucket, env):
    env(bucket.env)
    with pytest.raises(StorageNotFoundError, match="bucket 'no-such-gcs-bucket' does not exist"):
        download("gs://no-such-gcs-bucket/xgb")
    with pytest.raises(StorageNotFoundError, match=f"gs://{BUCKET}/absent"):
        download(f"gs://{BUCKET}/absent")


def test_endpoint_down(env):
    from microservice import free_port

    env({"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(StorageUnreachableError, match="STORAGE_EMULATOR_HOST"):
        download(f"gs://{BUCKET}/xgb")


def test_fetch_command_prints_no_warning_and_loads_no_seldon_core(bucket, tmp_path, tree):
    """The init container's output is its own (google-api-core's Python-version notice is
    filtered) and it starts fast: neither seldon-core nor Flask is imported on the way."""
    dest = tmp_path / "mnt" / "models"
    command = [str(BIN / "python"), "-X", "importtime", "-m", "modelshelf", "fetch"]
    environment = {**bucket.env, "HOME": str(tmp_path)}
    done = subprocess.run(
        [*command, f"gs://{BUCKET}/xgb", str(dest)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in tree(dest).items() if not k.startswith(".modelshelf")} == MODEL
    imported = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "google.cloud.storage" in imported  # the importtime report is complete
    assert not [name for name in imported if name.startswith(("seldon_core", "flask"))]
    output = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert not [line for line in output if "Warning" in line], output
