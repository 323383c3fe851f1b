"""HTTP downloads from a lying server: verified or refused, bounded in time, one line each.

The server is ``faulty.LyingHTTPServer`` (announces more than it sends, sends a wrong MD5,
trickles, hangs). Limits are set small through the documented variables so the tests end fast.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import joblib
import pytest
from faulty import Route, lying_http_server, wait_until

from microservice import BIN
from modelshelf.errors import StorageError, StorageUnreachableError
from modelshelf.storage import download

MODEL = bytes(range(256)) * 161  # 41,216 bytes


def fetch(url: str, dest: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``modelshelf fetch URL DEST`` as the init container runs it."""
    return subprocess.run(
        [str(BIN / "modelshelf"), "fetch", url, str(dest)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def only_line(stderr: str) -> str:
    """The error output is one line (no traceback) -- the log lines before it aside."""
    lines = [line for line in stderr.splitlines() if "modelshelf fetch:" in line]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_truncated_body_is_retried_then_refused_and_nothing_is_kept(env, tmp_path):
    env({})
    routes = {"/m/model.joblib": Route(MODEL, "truncate", cut_at=20512)}
    with lying_http_server(routes) as server:
        url = f"{server.url}/m/model.joblib"
        with pytest.raises(StorageError, match=f"received 20512 of {len(MODEL)} bytes"):
            download(url)
        assert server.requests["/m/model.joblib"] == 3  # two retries
        cache = tmp_path / "cache"
        assert not [p for p in cache.rglob("*") if p.is_file()]  # no .lock left either
        dest = tmp_path / "dest"
        result = fetch(url, dest)
    assert result.returncode == 1
    line = only_line(result.stderr)
    assert f"cannot download {url}: received 20512 of {len(MODEL)} bytes" in line
    assert not (dest / "model.joblib").exists()
    assert not (dest / ".modelshelf-manifest.json").exists()
    assert not dest.exists()  # the folder it made for the model (with its lock) is gone


def test_a_cut_that_happens_once_is_retried_and_the_file_verified(env, tree):
    env({})
    routes = {"/model.joblib": Route(MODEL, "truncate", cut_at=1000, faults=1)}
    with lying_http_server(routes) as server:
        folder = download(f"{server.url}/model.joblib")
        assert server.requests["/model.joblib"] == 2
    assert tree(folder) == {"model.joblib": MODEL}


def test_a_wrong_md5_is_refused(env, tmp_path):
    env({})
    with lying_http_server({"/model.joblib": Route(MODEL, "bad-md5")}) as server:
        with pytest.raises(StorageError, match=r"MD5 is .* the store says"):
            download(f"{server.url}/model.joblib")
        assert server.requests["/model.joblib"] == 3
    assert not list((tmp_path / "cache").glob("*.manifest.json"))


def test_a_file_truncated_on_disk_after_a_download_is_fetched_again(env, tree):
    """The issue's endless failure: a short file in the cache and a 304 for its ETag."""
    env({})
    with lying_http_server({"/model.joblib": Route(MODEL)}) as server:
        folder = download(f"{server.url}/model.joblib")
        (folder / "model.joblib").write_bytes(MODEL[:100])
        assert download(f"{server.url}/model.joblib") == folder
        assert server.requests["/model.joblib"] == 2
    assert tree(folder) == {"model.joblib": MODEL}


def test_a_trickle_ends_at_the_low_speed_limit(env):
    env(
        {
            "MODELSHELF_DOWNLOAD_MIN_SPEED": "100",
            "MODELSHELF_DOWNLOAD_SPEED_WINDOW": "2",
        }
    )
    with lying_http_server({"/model.joblib": Route(MODEL, "trickle", interval=0.5)}) as server:
        started = time.monotonic()
        with pytest.raises(StorageUnreachableError, match="below 100 bytes/s") as caught:
            download(f"{server.url}/model.joblib")
        seconds = time.monotonic() - started
    assert "MODELSHELF_DOWNLOAD_MIN_SPEED" in str(caught.value)
    assert seconds < 30, seconds  # bounded: a trickle never ended before


def test_a_fractional_low_speed_limit_is_kept_not_truncated_to_off(env):
    """``MIN_SPEED=0.5`` (a byte every 2 s) was read as int 0: the check was off, and a byte
    every 2.5 s ran until the overall deadline."""
    env(
        {
            "MODELSHELF_DOWNLOAD_MIN_SPEED": "0.5",
            "MODELSHELF_DOWNLOAD_SPEED_WINDOW": "4",
            "MODELSHELF_DOWNLOAD_TIMEOUT": "20",
        }
    )
    routes = {"/model.joblib": Route(MODEL, "trickle", interval=2.5)}
    with (
        lying_http_server(routes) as server,
        pytest.raises(StorageUnreachableError, match=r"below 0\.5 bytes/s"),
    ):
        download(f"{server.url}/model.joblib")


def test_the_overall_deadline_ends_a_download_that_is_slow_but_not_too_slow(env):
    env({"MODELSHELF_DOWNLOAD_TIMEOUT": "3", "MODELSHELF_DOWNLOAD_MIN_SPEED": "0"})
    with lying_http_server({"/model.joblib": Route(MODEL, "trickle", interval=0.2)}) as server:
        started = time.monotonic()
        with pytest.raises(StorageUnreachableError, match="not finished within 3 s"):
            download(f"{server.url}/model.joblib")
        assert time.monotonic() - started < 30


def test_an_endpoint_that_never_answers_ends_after_the_read_timeout(env):
    env({"MODELSHELF_DOWNLOAD_SPEED_WINDOW": "1"})
    with lying_http_server({"/model.joblib": Route(MODEL, "hang")}) as server:
        with pytest.raises(StorageUnreachableError, match="no answer after 3 attempts"):
            download(f"{server.url}/model.joblib")
        assert server.requests["/model.joblib"] == 3


def test_a_process_that_waited_for_a_failed_download_reports_that_failure(tmp_path):
    """Two ``modelshelf fetch`` into the same folder: the second waits for the first's lock,
    then reports its failure without asking the server again. (The first holds the lock for
    three read timeouts of 3 s: time enough for the second to start, even on a loaded host.)"""
    env = {"MODELSHELF_DOWNLOAD_SPEED_WINDOW": "3"}
    dest = tmp_path / "dest"
    with lying_http_server({"/model.joblib": Route(MODEL, "hang")}) as server:
        url = f"{server.url}/model.joblib"
        first = subprocess.Popen(
            [str(BIN / "modelshelf"), "fetch", url, str(dest)],
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: server.requests["/model.joblib"] >= 1)
            second = fetch(url, dest, env)
            first.communicate(timeout=60)
        finally:
            first.kill()
            first.wait()
        asked = server.requests["/model.joblib"]
    assert first.returncode == 1 and second.returncode == 1
    assert asked == 3, asked  # only the first process's three attempts
    assert "waiting for another process downloading" in second.stderr
    line = only_line(second.stderr)
    assert "no answer after 3 attempts" in line and f"reported by process {first.pid}" in line
    assert not dest.exists()  # the folder they made, with their lock files, is gone


def test_a_cached_model_that_fails_to_load_is_downloaded_again(env, sklearn_models):
    """A broken file in the cache (verified as sent, but unloadable) is invalidated when the
    server fails to load it; fixed at the source, the next start downloads and loads it."""
    from modelshelf.errors import ModelLoadError
    from modelshelf.frameworks.sklearn import SKLearnServer

    env({})
    good = (sklearn_models["iris"] / "model.joblib").read_bytes()
    route = Route(b"not a pickle at all")
    with lying_http_server({"/iris/model.joblib": route}) as server:
        url = f"{server.url}/iris/model.joblib"
        with pytest.raises(ModelLoadError):
            SKLearnServer(url).load()
        route.body = good
        server_ = SKLearnServer(url)
        server_.load()
        assert server.requests["/iris/model.joblib"] == 2
    model = joblib.load(sklearn_models["iris"] / "model.joblib")
    assert type(server_.model) is type(model)


def test_a_redirect_to_another_host_does_not_carry_the_password(env, tree):
    """The URL's user info becomes a Basic header for its own host only (a redirect to a CDN
    or a signed URL elsewhere never sees it)."""
    env({})
    with lying_http_server({"/model.joblib": Route(MODEL)}) as elsewhere:
        target = f"{elsewhere.url}/model.joblib".replace("127.0.0.1", "localhost")
        routes = {"/m/model.joblib": Route(b"", "redirect", location=target)}
        with lying_http_server(routes, password="pa55word") as origin:
            url = origin.url.replace("http://", "http://reader:pa55word@")
            folder = download(f"{url}/m/model.joblib?X-Amz-Signature=pa55word")
            assert origin.authorizations and origin.authorizations[0].startswith("Basic ")
        assert elsewhere.authorizations == [None]
    assert tree(folder) == {"model.joblib": MODEL}
