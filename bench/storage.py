"""Download throughput: ``modelshelf fetch URI DEST`` against ``aws s3 sync`` on the same data,
from a local S3 server (moto_server), one big object and many small files, interleaved.

Each run downloads into a new empty folder (no "unchanged, skip" shortcut) and the peak memory
of the downloading process tree is sampled while it runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from bench.config import VENV_BIN
from bench.procs import free_port

BUCKET = "bench"
ACCESS = {"AWS_ACCESS_KEY_ID": "bench-key", "AWS_SECRET_ACCESS_KEY": "bench-secret"}


@contextlib.contextmanager
def moto(work: Path) -> Iterator[str]:
    port = free_port()
    log = open(work / "moto.log", "wb")  # noqa: SIM115 - written until the server stops
    process = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(endpoint, timeout=1)
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start on {endpoint}")
            time.sleep(0.1)
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        process.wait()
        log.close()


def _client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
    )


def upload_data(endpoint: str, work: Path, big_mb: int, small_files: int) -> dict[str, dict]:
    """One ``big_mb`` MB object under ``big/`` and ``small_files`` 4 KiB files under ``small/``."""
    client = _client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    big = work / "big.bin"
    with open(big, "wb") as out:
        chunk = os.urandom(2**20)
        for _ in range(big_mb):
            out.write(chunk)
    client.upload_file(str(big), BUCKET, "big/model.bin")
    big.unlink()
    small = os.urandom(4096)

    def put(i: int) -> None:
        client.put_object(Bucket=BUCKET, Key=f"small/d{i % 20:02d}/f{i:05d}.bin", Body=small)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(small_files)))
    # The big object is named by its key for fetch (a prefix holding a single non-archive object
    # is taken for an archive by modelshelf fetch at the time of writing); sync takes prefixes.
    return {
        "big": {"files": 1, "bytes": big_mb * 2**20, "fetch": "big/model.bin", "sync": "big"},
        "small": {
            "files": small_files,
            "bytes": small_files * 4096,
            "fetch": "small",
            "sync": "small",
        },
    }


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds the command took and the peak RSS (MB) of its process tree, sampled every 20 ms."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = [watched, *watched.children(recursive=True)]
            rss = 0
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += p.memory_info().rss
            peak = max(peak, rss)
        time.sleep(0.02)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(
            f"{command[0]} exited {process.returncode}: {process.stderr.read()[-800:]}"
        )
    return seconds, peak / 2**20


def _model_bytes(folder: Path) -> int:
    """Bytes of the downloaded files, leaving out fetch's own bookkeeping (``.modelshelf*``)."""
    return sum(
        p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".modelshelf")
    )


def measure(work: Path, aws_bin: Path | None, big_mb: int, small_files: int, rounds: int) -> dict:
    """Interleaved runs (fetch, aws, fetch, aws …); medians and the same-round ratios."""
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with moto(work) as endpoint:
        data = upload_data(endpoint, work, big_mb, small_files)
        setup_s = round(time.monotonic() - started, 1)  # moto up, data uploaded: not measured
        env = {
            **os.environ,
            **ACCESS,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "USE_SSL": "false",
        }
        tools = {
            "modelshelf fetch": lambda uri, dest: [
                str(VENV_BIN / "modelshelf"),
                "--log-level",
                "WARNING",
                "fetch",
                uri,
                dest,
            ]
        }
        if aws_bin is not None:
            tools["aws s3 sync"] = lambda uri, dest: [
                str(aws_bin / "aws"), "s3", "sync", "--only-show-errors",
                "--endpoint-url", endpoint, uri, dest,
            ]  # fmt: skip
        runs: dict[str, dict[str, list[dict]]] = {name: {t: [] for t in tools} for name in data}
        for _ in range(rounds):
            for name in data:
                for tool, command in tools.items():
                    dest = Path(tempfile.mkdtemp(prefix="dest-", dir=work))
                    key = data[name]["fetch" if tool == "modelshelf fetch" else "sync"]
                    seconds, peak = _timed(command(f"s3://{BUCKET}/{key}", str(dest)), env)
                    got = _model_bytes(dest)
                    shutil.rmtree(dest)
                    if got != data[name]["bytes"]:
                        raise RuntimeError(
                            f"{tool} downloaded {got} bytes of s3://{BUCKET}/{name}, "
                            f"expected {data[name]['bytes']}"
                        )
                    runs[name][tool].append(
                        {
                            "seconds": round(seconds, 3),
                            "mb_per_s": round(data[name]["bytes"] / 2**20 / seconds, 2),
                            "files_per_s": round(data[name]["files"] / seconds, 1),
                            "peak_rss_mb": round(peak, 1),
                        }
                    )
    summary = {}
    for name, by_tool in runs.items():
        summary[name] = {
            tool: {
                "mb_per_s": statistics.median(r["mb_per_s"] for r in results),
                "files_per_s": statistics.median(r["files_per_s"] for r in results),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                "runs": results,
            }
            for tool, results in by_tool.items()
        }
        if "aws s3 sync" in by_tool:
            ratios = [
                theirs["seconds"] / ours["seconds"]
                for ours, theirs in zip(
                    by_tool["modelshelf fetch"], by_tool["aws s3 sync"], strict=True
                )
            ]
            summary[name]["ratio"] = round(statistics.median(ratios), 2)
    return {"data": data, "results": summary, "rounds": rounds, "setup_s": setup_s}
