"""GCS downloads through a proxy that cuts, corrupts or trickles gcp-storage-emulator's answers:
checked against the listing's size and MD5, retried, then one line; bounded in time."""

from __future__ import annotations

import pytest
from faulty import cutting_proxy

from modelshelf.errors import StorageError, StorageUnreachableError
from modelshelf.storage import download

BUCKET = "gcs-faults"
MODEL = bytes(range(256)) * 400  # 100 KiB


@pytest.fixture(scope="module")
def bucket(gcs_server):
    gcs_server.upload(BUCKET, {"m/model.joblib": MODEL})
    return gcs_server


def test_a_cut_body_is_retried_then_refused(bucket, env, tree):
    """(Also shows the media download goes to ``STORAGE_EMULATOR_HOST``, through the proxy:
    the emulator's own media links name its real port.)"""
    with cutting_proxy(bucket.endpoint, mode="cut", after=40 * 1024) as proxy:
        env({"STORAGE_EMULATOR_HOST": proxy.endpoint})
        with pytest.raises(StorageError, match=r"\(the transfer was cut\), in each of 3"):
            download(f"gs://{BUCKET}/m")
    with cutting_proxy(bucket.endpoint, mode="cut", after=40 * 1024, faults=1) as proxy:
        env({"STORAGE_EMULATOR_HOST": proxy.endpoint})
        folder = download(f"gs://{BUCKET}/m")
        assert proxy.harmed == 1
    assert tree(folder) == {"model.joblib": MODEL}


def test_a_corrupted_body_fails_its_md5(bucket, env):
    with cutting_proxy(bucket.endpoint, mode="corrupt", after=40 * 1024) as proxy:
        env({"STORAGE_EMULATOR_HOST": proxy.endpoint})
        with pytest.raises(StorageError, match=r"MD5 is .* the store says"):
            download(f"gs://{BUCKET}/m")


def test_a_trickle_ends_at_the_low_speed_limit(bucket, env):
    with cutting_proxy(bucket.endpoint, mode="trickle", after=40 * 1024, interval=0.5) as proxy:
        env(
            {
                "STORAGE_EMULATOR_HOST": proxy.endpoint,
                "MODELSHELF_DOWNLOAD_MIN_SPEED": "1000",
                "MODELSHELF_DOWNLOAD_SPEED_WINDOW": "2",
            }
        )
        with pytest.raises(StorageUnreachableError, match="below 1000 bytes/s"):
            download(f"gs://{BUCKET}/m")
