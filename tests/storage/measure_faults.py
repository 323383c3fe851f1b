"""Time to fail of each storage fault, and each archive attack's outcome, with the documented
defaults: the figures of the README's "Storage faults and secrets" tables.

    .venv/bin/python tests/storage/measure_faults.py [http] [s3] [archives]

Takes about six minutes for all three (the faults that end at the 30 s low-speed window, or
after three read timeouts of 30 s, take that long). Prints one Markdown table row per case.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from faulty import Route, cutting_proxy, lying_http_server, silent_endpoint  # noqa: E402
from test_archive_bombs import disk_bytes, many_entries, tar_gz_bomb, zip_bomb  # noqa: E402

from modelshelf.graph.ports import free_port  # noqa: E402
from modelshelf.storage import _archive, download  # noqa: E402
from s3server import running_s3_server  # noqa: E402


def row(case: str, action: Callable[[], object], env: dict[str, str] | None = None) -> None:
    """Run ``action`` with ``env`` and a fresh cache; print its time and first words."""
    saved = dict(os.environ)
    os.environ.update({"MODELSHELF_MODEL_CACHE": tempfile.mkdtemp(), **(env or {})})
    started = time.monotonic()
    try:
        action()
        outcome = "accepted"
    except Exception as exc:  # the outcome is what is measured
        outcome = f"{type(exc).__name__}: {str(exc)[:160]}"
    seconds = time.monotonic() - started
    os.environ.clear()
    os.environ.update(saved)
    print(f"| {case} | {seconds:.1f} s | {outcome} |", flush=True)


def http_faults() -> None:
    model = os.urandom(41025)
    routes = {
        "/cut/model.joblib": Route(model, "truncate", cut_at=20512),
        "/md5/model.joblib": Route(model, "bad-md5"),
        "/slow/model.joblib": Route(model, "trickle", interval=5.0),
        "/hang/model.joblib": Route(model, "hang"),
    }
    with lying_http_server(routes) as server:
        row(
            "HTTP Content-Length 41025, 20512 sent",
            lambda: download(f"{server.url}/cut/model.joblib"),
        )
        row("HTTP wrong Content-MD5", lambda: download(f"{server.url}/md5/model.joblib"))
        row("HTTP one byte every 5 s", lambda: download(f"{server.url}/slow/model.joblib"))
        row("HTTP accepts, never answers", lambda: download(f"{server.url}/hang/model.joblib"))
        row(
            "HTTP one byte every 5 s, MIN_SPEED=0, TIMEOUT=20",
            lambda: download(f"{server.url}/slow/model.joblib"),
            {"MODELSHELF_DOWNLOAD_MIN_SPEED": "0", "MODELSHELF_DOWNLOAD_TIMEOUT": "20"},
        )
    row("HTTP connection refused", lambda: download(f"http://127.0.0.1:{free_port()}/m.joblib"))


def s3_faults() -> None:
    with running_s3_server() as s3:
        client = s3.client()
        client.create_bucket(Bucket="measured")
        client.put_object(Bucket="measured", Key="big/model.bin", Body=os.urandom(20 << 20))
        client.put_object(Bucket="measured", Key="small/model.joblib", Body=os.urandom(41025))
        os.environ.update(s3.env)
        cases = [
            ("S3 20 MiB object (ranged parts), every connection cut", "cut", "big"),
            ("S3 object corrupted in transit", "corrupt", "small"),
            ("S3 one byte every 5 s", "trickle", "small"),
        ]
        for case, mode, key in cases:
            with cutting_proxy(s3.endpoint, mode=mode, after=20 * 1024, interval=5.0) as proxy:
                row(case, lambda k=key: download(f"s3://measured/{k}"), {
                    "AWS_ENDPOINT_URL": proxy.endpoint
                })  # fmt: skip
        with silent_endpoint() as silent:
            row(
                "S3 endpoint accepts, never answers",
                lambda: download("s3://measured/small"),
                {"AWS_ENDPOINT_URL": silent.endpoint},
            )


def archive_attacks() -> None:
    folder = Path(tempfile.mkdtemp())
    attacks = [
        ("tar.gz, 1 MB, one entry of 1 GiB", lambda: tar_gz_bomb(folder / "a.tar.gz", 1024)),
        ("zip, 1 MB, one entry of 1 GiB", lambda: zip_bomb(folder / "a.zip", 1024)),
        ("tar.gz, 10 MB, one entry of 10 GiB", lambda: tar_gz_bomb(folder / "b.tar.gz", 10240)),
        ("tar.gz, 200,000 entries", lambda: many_entries(folder / "c.tar.gz", 200_000)),
        ("zip, 200,000 entries", lambda: many_entries(folder / "c.zip", 200_000)),
    ]
    for case, make in attacks:
        archive = make()
        out = folder / f"out-{archive.name}"
        out.mkdir()
        row(case, lambda a=archive, o=out: _archive.extract("s3://b/archive", a, o))
        print(f"|   written | {disk_bytes(out)} bytes | |", flush=True)


if __name__ == "__main__":
    for name in list(os.environ):
        if name.startswith(("AWS_", "MODELSHELF_", "RCLONE_", "S3_", "STORAGE_EMULATOR")):
            del os.environ[name]
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    parts = sys.argv[1:] or ["http", "s3", "archives"]
    for part in parts:
        {"http": http_faults, "s3": s3_faults, "archives": archive_attacks}[part]()
