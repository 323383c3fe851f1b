"""``download()`` of single files from a local ``http.server``: plain, archive, 304, errors."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from modelshelf.errors import StorageError, StorageNotFoundError, UnsafeArchiveError
from modelshelf.storage import download


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records each request's path and status (to prove 304s)."""

    log: list[tuple[str, int]]
    authorizations: list[str | None]

    def log_request(self, code="-", size="-"):
        self.log.append((self.path, int(code)))
        self.authorizations.append(self.headers.get("Authorization"))

    def do_GET(self):
        if self.path.startswith("/busy/"):  # a server that cannot answer now
            self.send_error(503)
            return
        super().do_GET()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "model.joblib").write_bytes(b"pretend pickle" * 1000)
    (root / "iris").mkdir()
    (root / "iris" / "model.joblib").write_bytes(b"pretend pickle")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {"model.joblib": b"in a tarball", "sub/x.txt": b"x"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("up")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../.."
    (root / "model.tar.gz").write_bytes(buffer.getvalue())
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        tar.addfile(link)
    (root / "evil.tgz").write_bytes(evil.getvalue())
    handler = type("Recording", (Handler,), {"log": [], "authorizations": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, handler.log, handler
    finally:
        server.shutdown()
        server.server_close()


def test_single_file_then_not_modified(site, env, tree):
    url, root, log, _ = site
    env({})
    folder = download(f"{url}/model.joblib")
    assert tree(folder) == {"model.joblib": (root / "model.joblib").read_bytes()}
    log.clear()
    assert download(f"{url}/model.joblib") == folder
    assert log == [("/model.joblib", 304)]
    assert tree(folder) == {"model.joblib": (root / "model.joblib").read_bytes()}


def test_tarball_is_unpacked_and_a_link_is_refused(site, env, tree, tmp_path):
    url, _, _, _ = site
    env({})
    dest = tmp_path / "dest"
    download(f"{url}/model.tar.gz", dest)
    found = {k: v for k, v in tree(dest).items() if not k.startswith(".modelshelf")}
    assert found == {"model.joblib": b"in a tarball", "sub/x.txt": b"x"}
    with pytest.raises(UnsafeArchiveError, match="'up' is a link"):
        download(f"{url}/evil.tgz")


def test_missing_file_error_hides_the_signature(site, env):
    url, _, _, _ = site
    env({})
    signed = f"{url}/absent.joblib?X-Amz-Signature=deadbeefsecret&X-Amz-Credential=AKIAXXX"
    with pytest.raises(StorageNotFoundError) as caught:
        download(signed)
    message = str(caught.value)
    assert f"{url}/absent.joblib" in message and "HTTP 404" in message
    assert "deadbeefsecret" not in message and "AKIAXXX" not in message


def test_user_info_is_sent_as_basic_auth_and_never_shown(site, env):
    url, _, _, handler = site
    env({})
    with_user = url.replace("http://", "http://alice:s3cret@")
    handler.authorizations.clear()
    with pytest.raises(StorageNotFoundError) as caught:
        download(f"{with_user}/nothing.bin")
    assert "s3cret" not in str(caught.value) and "alice" not in str(caught.value)
    assert Path(caught.value.uri).name == "nothing.bin"
    assert handler.authorizations[0] == "Basic " + base64.b64encode(b"alice:s3cret").decode()


def test_a_failed_download_leaves_no_folder_behind(site, env, tmp_path):
    """Nothing that looks like a model is left: not in the cache, not at a destination the
    download created (its parents included); a destination that existed is kept."""
    url, _, _, _ = site
    env({})
    cache = tmp_path / "cache"
    with pytest.raises(StorageNotFoundError):
        download(f"{url}/absent/model.joblib")
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    created = tmp_path / "made" / "dest"
    with pytest.raises(StorageNotFoundError):
        download(f"{url}/absent/model.joblib", created)
    assert not (tmp_path / "made").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(StorageNotFoundError):
        download(f"{url}/absent/model.joblib", existing)
    assert existing.is_dir()
    download(f"{url}/model.joblib", created)  # and a good one still lands there
    assert (created / "model.joblib").is_file()


def test_a_folder_url_is_refused_as_a_web_page_and_nothing_is_kept(site, env, tmp_path):
    """http.server redirects ``/iris`` to ``/iris/`` and answers its listing as HTML: that is
    refused at once (no retries), naming what an http URI must name, not saved as a model."""
    url, _, log, _ = site
    env({})
    log.clear()
    with pytest.raises(
        StorageError, match=r"web page \(Content-Type: text/html\).*names one file"
    ) as caught:
        download(f"{url}/iris")
    assert "for a folder use an s3:// or gs:// URI, or a tarball" in str(caught.value)
    assert log == [("/iris", 301), ("/iris/", 200)]
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_only_server_errors_are_asked_again(site, env):
    """The retry policy: a 404 is final at once; a 503 is asked again, three attempts in all,
    and the last answer is the error, without the URL's signature."""
    url, _, log, _ = site
    env({})
    log.clear()
    with pytest.raises(StorageNotFoundError):
        download(f"{url}/absent/once.joblib")
    assert log == [("/absent/once.joblib", 404)]
    log.clear()
    with pytest.raises(StorageError) as caught:
        download(f"{url}/busy/model.joblib?X-Amz-Signature=deadbeefsecret")
    assert [status for _, status in log] == [503, 503, 503]
    message = str(caught.value)
    assert f"cannot download {url}/busy/model.joblib" in message and "HTTP 503" in message
    assert "deadbeefsecret" not in message
