"""A tiny PEP 503 package index on loopback (``http.server`` in a thread of the test process), so
the builder's index settings can be checked by what the index was asked."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name


@dataclass
class PackageIndex:
    """``url`` is the index's ``/simple`` root; ``requests`` the paths it was asked for."""

    url: str
    folder: Path
    requests: list[str] = field(default_factory=list)

    def asked_for(self, name: str) -> bool:
        return f"/simple/{canonicalize_name(name)}/" in self.requests


def _handler(index: PackageIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # uv asks whether a wheel can be read in ranges
            self._head_only = True
            self.do_GET()

        def do_GET(self) -> None:
            index.requests.append(self.path)
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if len(parts) == 2 and parts[0] == "simple":
                files = [
                    f
                    for f in sorted(index.folder.iterdir())
                    if canonicalize_name(f.name.split("-")[0]) == parts[1]
                ]
                if not files:
                    return self._send(404, b"not found", "text/plain")
                links = "".join(
                    f'<a href="/files/{html.escape(f.name)}">{html.escape(f.name)}</a>\n'
                    for f in files
                )
                return self._send(200, f"<html><body>\n{links}</body></html>".encode(), "text/html")
            if len(parts) == 2 and parts[0] == "files" and (index.folder / parts[1]).is_file():
                return self._send(
                    200, (index.folder / parts[1]).read_bytes(), "application/octet-stream"
                )
            self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not getattr(self, "_head_only", False):
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def package_index(tmp_path: Path) -> Iterator[PackageIndex]:
    """An empty index; a test puts wheels (or sdists) into ``package_index.folder``."""
    folder = tmp_path / "index-files"
    folder.mkdir()
    index = PackageIndex("", folder)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(index))
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
