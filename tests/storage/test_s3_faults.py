"""S3 downloads through a proxy that cuts, corrupts or trickles moto_server's answers.

Objects of 8 MB and more download in ranged parts (the multipart path whose cut once ended in
an s3transfer traceback); smaller ones in one GET, checked against their ETag's MD5.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess

import pytest
from faulty import cutting_proxy, silent_endpoint

from microservice import BIN
from modelshelf.errors import StorageError, StorageUnreachableError
from modelshelf.storage import download

BUCKET = "faulty-network"
BIG = hashlib.sha256(b"seed").digest() * (20 * 1024 * 1024 // 32)  # 20 MiB: three parts
SMALL = bytes(range(256)) * 400  # 100 KiB


@pytest.fixture(scope="module")
def objects(s3_server):
    client = s3_server.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="big/model.bin", Body=BIG)
    client.put_object(Bucket=BUCKET, Key="small/model.joblib", Body=SMALL)
    return s3_server


def through(proxy, s3_server) -> dict[str, str]:
    return {**s3_server.env, "AWS_ENDPOINT_URL": proxy.endpoint}


def test_a_big_object_cut_every_time_fails_with_one_line(objects, env, tmp_path):
    with cutting_proxy(objects.endpoint, mode="cut", after=256 * 1024) as proxy:
        env(through(proxy, objects))
        with pytest.raises(StorageError, match="the transfer was cut"):
            download(f"s3://{BUCKET}/big/model.bin")
        result = subprocess.run(
            [str(BIN / "modelshelf"), "fetch", f"s3://{BUCKET}/big", str(tmp_path / "dest")],
            env={**os.environ, **through(proxy, objects)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "RetriesExceeded" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("modelshelf fetch:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"modelshelf fetch: cannot download s3://{BUCKET}/big: ")
    assert "(the transfer was cut), in each of 3 attempts: check the endpoint" in lines[0]
    assert not (tmp_path / "dest" / "model.bin").exists()


def test_cuts_that_stop_are_retried_and_the_parts_assemble(objects, env, tree):
    with cutting_proxy(objects.endpoint, mode="cut", after=256 * 1024, faults=2) as proxy:
        env(through(proxy, objects))
        folder = download(f"s3://{BUCKET}/big")
        assert proxy.harmed == 2
    assert tree(folder) == {"model.bin": BIG}


def test_a_corrupted_body_fails_its_etag_md5_then_a_clean_one_passes(objects, env, tree):
    with cutting_proxy(objects.endpoint, mode="corrupt", after=50 * 1024) as proxy:
        env(through(proxy, objects))
        with pytest.raises(StorageError, match=r"MD5 is .* the store says"):
            download(f"s3://{BUCKET}/small")
    with cutting_proxy(objects.endpoint, mode="corrupt", after=50 * 1024, faults=1) as proxy:
        env(through(proxy, objects))
        folder = download(f"s3://{BUCKET}/small")
        assert proxy.harmed == 1
    assert tree(folder) == {"model.joblib": SMALL}


def test_a_trickling_endpoint_ends_at_the_low_speed_limit(objects, env):
    with cutting_proxy(objects.endpoint, mode="trickle", after=20 * 1024, interval=0.5) as proxy:
        env(
            {
                **through(proxy, objects),
                "MODELSHELF_DOWNLOAD_MIN_SPEED": "1000",
                "MODELSHELF_DOWNLOAD_SPEED_WINDOW": "2",
            }
        )
        with pytest.raises(StorageUnreachableError, match="below 1000 bytes/s"):
            download(f"s3://{BUCKET}/small")


def test_an_endpoint_that_never_answers_is_given_three_attempts(env):
    """Three attempts in all (botocore's ``max_attempts`` would have been four), each ended
    by the read timeout (the low-speed window)."""
    with silent_endpoint() as silent:
        env(
            {
                "AWS_ENDPOINT_URL": silent.endpoint,
                "AWS_ACCESS_KEY_ID": "a",
                "AWS_SECRET_ACCESS_KEY": "b",
                "MODELSHELF_DOWNLOAD_SPEED_WINDOW": "1",
            }
        )
        with pytest.raises(StorageUnreachableError, match="did not answer after 3 attempts"):
            download(f"s3://{BUCKET}/small")
        assert silent.connections == 3
