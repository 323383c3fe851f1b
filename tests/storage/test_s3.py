"""``download()`` from a real S3 endpoint (moto_server): layout, errors, incremental, locking."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from microservice import BIN, free_port
from modelshelf.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageUnreachableError,
    UnsafeArchiveError,
)
from modelshelf.storage import download

BUCKET = "models"
MODEL = {
    "model.joblib": b"pretend pickle" * 1000,
    "metadata.yaml": b"name: iris\n",
    "sub/deeper/vocabulary.txt": b"a\nb\n",
    "sub/empty.bin": b"",
}


def tar_gz(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bucket(s3_server):
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    for name, data in MODEL.items():
        client.put_object(Bucket=BUCKET, Key=f"iris/{name}", Body=data)
    client.put_object(Bucket=BUCKET, Key="iris-v2/model.joblib", Body=b"the other model")
    client.put_object(Bucket=BUCKET, Key="iris/", Body=b"")  # a "folder" marker
    client.put_object(Bucket=BUCKET, Key="bundle.tar.gz", Body=tar_gz(MODEL))
    client.put_object(Bucket=BUCKET, Key="bundle.zip", Body=zipped(MODEL))
    client.put_object(Bucket=BUCKET, Key="evil-dotdot.tar.gz", Body=tar_gz({"../escape": b"x"}))
    client.put_object(Bucket=BUCKET, Key="evil-abs.zip", Body=zipped({"/tmp/escape": b"x"}))
    client.put_object(
        Bucket=BUCKET, Key="evil-link.tar.gz", Body=tar_gz({}, {"passwd": "/etc/passwd"})
    )
    return s3_server


def test_prefix_downloads_nested_folders_and_stops_at_the_prefix_boundary(bucket, env, tree):
    env(bucket.env)
    folder = download(f"s3://{BUCKET}/iris")
    assert tree(folder) == MODEL  # not iris-v2/…, not the folder marker
    assert tree(download(f"s3://{BUCKET}/iris/")) == MODEL


def test_a_key_naming_one_object_downloads_that_file(bucket, env, tree):
    env(bucket.env)
    folder = download(f"s3://{BUCKET}/iris/sub/deeper/vocabulary.txt")
    assert tree(folder) == {"vocabulary.txt": b"a\nb\n"}


def test_explicit_dest_keeps_other_files_and_needs_no_cache(bucket, env, tree, tmp_path):
    env(bucket.env)
    dest = tmp_path / "mnt" / "models"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep me")
    assert download(f"s3://{BUCKET}/iris", dest) == dest
    found = {k: v for k, v in tree(dest).items() if not k.startswith(".modelshelf")}
    assert found == {**MODEL, "mine.txt": b"keep me"}
    assert not (tmp_path / "cache").exists()
    inode = (dest / "model.joblib").stat().st_ino
    assert download(f"s3://{BUCKET}/iris", dest) == dest  # again: nothing rewritten
    assert (dest / "model.joblib").stat().st_ino == inode
    single = tmp_path / "single"
    download(f"s3://{BUCKET}/iris/model.joblib", single)  # one object, not an archive
    assert (single / "model.joblib").read_bytes() == MODEL["model.joblib"]


def test_missing_bucket_and_missing_key_name_the_uri(bucket, env):
    env(bucket.env)
    with pytest.raises(StorageNotFoundError) as missing_bucket:
        download("s3://no-such-bucket/iris")
    assert "s3://no-such-bucket/iris" in str(missing_bucket.value)
    assert "bucket 'no-such-bucket' does not exist" in str(missing_bucket.value)
    with pytest.raises(StorageNotFoundError) as missing_key:
        download(f"s3://{BUCKET}/iris/nothing-here")
    assert f"s3://{BUCKET}/iris/nothing-here" in str(missing_key.value)
    assert "no object" in str(missing_key.value)


def test_endpoint_down_fails_within_bounded_time_and_says_what_to_check(env):
    env(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
        }
    )
    started = time.monotonic()
    with pytest.raises(StorageUnreachableError) as caught:
        download(f"s3://{BUCKET}/iris")
    assert time.monotonic() - started < 60
    assert "AWS_ENDPOINT_URL" in str(caught.value)


@pytest.mark.parametrize("name", ["bundle.tar.gz", "bundle.zip"])
def test_archives_are_unpacked(bucket, env, tree, name):
    env(bucket.env)
    assert tree(download(f"s3://{BUCKET}/{name}")) == MODEL


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("evil-dotdot.tar.gz", "../escape"),
        ("evil-abs.zip", "/tmp/escape"),
        ("evil-link.tar.gz", "passwd"),
    ],
)
def test_malicious_archives_are_rejected_and_leave_nothing(bucket, env, tmp_path, name, entry):
    env(bucket.env)
    with pytest.raises(UnsafeArchiveError) as caught:
        download(f"s3://{BUCKET}/{name}")
    assert repr(entry) in str(caught.value)
    cache = tmp_path / "cache"
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # lock files included
    assert not (tmp_path / "escape").exists()


def test_anonymous_requests_when_no_credentials_exist(bucket, env, tree):
    client = bucket.client()
    client.create_bucket(Bucket="public-models", ACL="public-read")
    client.put_object(Bucket="public-models", Key="m/model.joblib", Body=b"x", ACL="public-read")
    env({"AWS_ENDPOINT_URL": bucket.endpoint})
    assert tree(download("s3://public-models/m")) == {"model.joblib": b"x"}
    with pytest.raises(StorageAccessError) as caught:  # a private object: moto checks the ACL
        download(f"s3://{BUCKET}/iris")
    assert "anonymous requests" in str(caught.value)
    # Credentials present but awsAnonymousCredential=true: unsigned, so the private object is
    # refused while the public one is read.
    env({**bucket.env, "awsAnonymousCredential": "true"})
    assert tree(download("s3://public-models/m")) == {"model.joblib": b"x"}
    with pytest.raises(StorageAccessError):
        download(f"s3://{BUCKET}/iris/model.joblib")


def test_wrong_credentials_are_access_denied_without_the_secret(audited_s3, env):
    client = audited_s3.client()
    client.create_bucket(Bucket="guarded")
    client.put_object(Bucket="guarded", Key="m/model.joblib", Body=b"x")
    wrong_secret = "not-the-secret-f00d"
    env({**audited_s3.env, "AWS_SECRET_ACCESS_KEY": wrong_secret})
    with pytest.raises(StorageAccessError) as caught:
        download("s3://guarded/m")
    message = str(caught.value)
    assert "s3://guarded/m" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert wrong_secret not in message
    assert audited_s3.access_key not in message


def test_second_download_of_unchanged_objects_transfers_nothing(audited_s3, env, tree):
    client = audited_s3.client()
    client.create_bucket(Bucket="incremental")
    for name, data in MODEL.items():
        client.put_object(Bucket="incremental", Key=f"m/{name}", Body=data)
    env(audited_s3.env)

    def fetched_keys(offset: int) -> list[str]:
        lines = audited_s3.requests_since(offset)
        return sorted(line.split()[1] for line in lines if line.startswith("GET /incremental/m/"))

    offset = audited_s3.log_size()
    folder = download("s3://incremental/m")
    assert tree(folder) == MODEL
    assert fetched_keys(offset) == sorted(f"/incremental/m/{name}" for name in MODEL)
    inode = (folder / "model.joblib").stat().st_ino

    offset = audited_s3.log_size()
    assert download("s3://incremental/m") == folder
    assert fetched_keys(offset) == []  # only the listing, no object read
    assert (folder / "model.joblib").stat().st_ino == inode

    client.put_object(Bucket="incremental", Key="m/metadata.yaml", Body=b"name: iris-2\n")
    client.delete_object(Bucket="incremental", Key="m/sub/empty.bin")
    offset = audited_s3.log_size()
    download("s3://incremental/m")
    assert fetched_keys(offset) == ["/incremental/m/metadata.yaml"]
    expected = {**MODEL, "metadata.yaml": b"name: iris-2\n"}
    del expected["sub/empty.bin"]
    assert tree(folder) == expected


def test_concurrent_downloads_of_one_uri_share_one_transfer(audited_s3, env, tmp_path, tree):
    """As seldon's REST parent and gRPC child do at start-up: both succeed, each object is read
    once, and neither sees a half-written folder."""
    client = audited_s3.client()
    client.create_bucket(Bucket="shared")
    files = {f"part-{i:02d}.bin": bytes([i]) * (256 * 1024) for i in range(12)}
    for name, data in files.items():
        client.put_object(Bucket="shared", Key=f"m/{name}", Body=data)
    cache = tmp_path / "shared-cache"
    script = (
        "import sys; from modelshelf.storage import download; "
        "p = download('s3://shared/m'); "
        "print(p, sum(f.stat().st_size for f in p.iterdir()))"
    )
    offset = audited_s3.log_size()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env={
                **audited_s3.env,
                "MODELSHELF_MODEL_CACHE": str(cache),
                "AWS_EC2_METADATA_DISABLED": "true",
                "PATH": str(BIN),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    total = sum(len(data) for data in files.values())
    assert len({out.split()[0] for out, _ in outputs}) == 1  # one shared folder
    assert all(out.split()[1] == str(total) for out, _ in outputs)
    reads = [line for line in audited_s3.requests_since(offset) if "GET /shared/m/part" in line]
    assert len(reads) == len(files)
    folder = Path(outputs[0][0].split()[0])
    assert tree(folder) == files


def test_keys_that_would_escape_the_folder_are_refused(bucket, env):
    bucket.client().put_object(Bucket=BUCKET, Key="sneaky/../../outside.txt", Body=b"x")
    env(bucket.env)
    with pytest.raises(StorageError) as caught:
        download(f"s3://{BUCKET}/sneaky")
    assert "outside the destination" in str(caught.value)


def test_kserve_style_host_only_endpoint(bucket, env, tree):
    host = bucket.endpoint.removeprefix("http://")
    env(
        {
            "S3_ENDPOINT": host,
            "S3_USE_HTTPS": "0",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
        }
    )
    assert tree(download(f"s3://{BUCKET}/iris")) == MODEL


def rclone_env(prefix: str, endpoint: str) -> dict[str, str]:
    return {
        f"{prefix}_TYPE": "s3",
        f"{prefix}_PROVIDER": "Minio",
        f"{prefix}_ENV_AUTH": "false",
        f"{prefix}_ACCESS_KEY_ID": "rclone-key",
        f"{prefix}_SECRET_ACCESS_KEY": "rclone-secret",
        f"{prefix}_ENDPOINT": endpoint,
    }


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        (f"s3:{BUCKET}/iris", "RCLONE_CONFIG_S3"),  # Seldon's documented rclone secret
        (f"minio-store:{BUCKET}/iris", "RCLONE_CONFIG_MINIO_STORE"),  # any remote name
        (f"s3://{BUCKET}/iris", "RCLONE_CONFIG_S3"),  # kfserving-style URI, rclone secret
    ],
)
def test_rclone_secrets_and_uris(bucket, env, tree, uri, remote):
    env(rclone_env(remote, bucket.endpoint))
    assert tree(download(uri)) == MODEL


def test_rclone_credentials_are_used(audited_s3, env, tree):
    client = audited_s3.client()
    client.create_bucket(Bucket="rclone-guarded")
    client.put_object(Bucket="rclone-guarded", Key="m/model.joblib", Body=b"x")
    settings = rclone_env("RCLONE_CONFIG_S3", audited_s3.endpoint)
    settings["RCLONE_CONFIG_S3_ACCESS_KEY_ID"] = audited_s3.access_key
    settings["RCLONE_CONFIG_S3_SECRET_ACCESS_KEY"] = audited_s3.secret_key
    env(settings)
    assert tree(download("s3:rclone-guarded/m")) == {"model.joblib": b"x"}
    env({"RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": "wrong"})
    with pytest.raises(StorageAccessError):
        download("s3:rclone-guarded/m")


def test_fetch_command_as_an_init_container(bucket, tmp_path, tree):
    dest = tmp_path / "mnt" / "models"
    command = [str(BIN / "modelshelf"), "fetch", f"s3://{BUCKET}/iris", str(dest)]
    environment = {**bucket.env, "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {k: v for k, v in tree(dest).items() if not k.startswith(".modelshelf")} == MODEL
    assert "downloaded s3://models/iris: 4 files" in done.stderr

    secret = bucket.env["AWS_SECRET_ACCESS_KEY"]
    missing = [str(BIN / "modelshelf"), "fetch", f"s3://{BUCKET}/absent", str(tmp_path / "x")]
    failed = subprocess.run(missing, env=environment, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    lines = [line for line in failed.stderr.splitlines() if line.startswith("modelshelf fetch:")]
    assert len(lines) == 1 and f"s3://{BUCKET}/absent" in lines[0], failed.stderr
    assert "Traceback" not in failed.stderr
    assert secret not in failed.stderr + done.stderr


@pytest.mark.parametrize(
    "uri, redacted, without",
    [
        ("s3://AKIAKEY:{secret}@guarded/m", "s3://<redacted>@guarded/m", "s3://guarded/m"),
        ("s3://AKIAKEY@guarded/m", "s3://<redacted>@guarded/m", "s3://guarded/m"),
        ("s3:AKIAKEY:{secret}@guarded/m", "s3:<redacted>@guarded/m", "s3:guarded/m"),
    ],
)
def test_credentials_in_an_s3_uri_are_refused_saying_where_they_go(
    audited_s3, env, tmp_path, uri, redacted, without
):
    """They were taken as part of the bucket name: boto3's "ParamValidationError (endpoint …,
    anonymous requests)", and nothing said the keys were never read."""
    client = audited_s3.client()
    client.create_bucket(Bucket="guarded")
    client.put_object(Bucket="guarded", Key="m/model.joblib", Body=b"x")
    secret = "uri-secret-c0ffee"
    uri = uri.format(secret=secret)
    env({"AWS_ENDPOINT_URL": audited_s3.endpoint})  # no AWS_* credentials: they are in the URI
    before = audited_s3.log_size()
    with pytest.raises(StorageAccessError) as caught:
        download(uri)
    message = str(caught.value)
    assert message.startswith(f"cannot download {redacted}: credentials in the URI"), message
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message
    assert message.endswith(f"write the URI without them: {without}")
    assert secret not in message and "AKIAKEY" not in message
    assert audited_s3.requests_since(before) == []  # refused before any request

    environment = {**os.environ, "HOME": str(tmp_path)}
    command = [str(BIN / "modelshelf"), "fetch", uri, str(tmp_path / "dest")]
    failed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    lines = [line for line in failed.stderr.splitlines() if line.startswith("modelshelf fetch:")]
    assert len(lines) == 1 and "credentials in the URI" in lines[0], failed.stderr
    assert "Traceback" not in failed.stderr and secret not in failed.stderr
