"""Server processes: start in their own process group, time to first prediction, memory of the
whole tree, stop the group (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench.load import read_answer, request_headers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    log_path: Path
    started: float  # time.monotonic() just before Popen

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def raise_if_exited(self) -> None:
        """A server that stopped while we wait for its first answer fails the run with its log."""
        if self.process.poll() is not None:
            raise RuntimeError(
                f"exited with {self.process.returncode} before answering:\n" + self.log_tail()
            )


def start(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> Server:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server(process, log_path, started)


def first_prediction(
    server: Server, url: str, body: bytes, check: object, timeout: float = 180
) -> tuple[float, dict]:
    """Seconds from start until ``url`` answers ``body`` with 200, and that answer's JSON.

    ``check(answer) -> str | None`` says what is wrong with a 200 answer (None when right), so a
    server that answers fast but wrongly never counts as ready.
    """
    deadline = server.started + timeout
    last = "no answer yet"
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            server.raise_if_exited()
            try:
                answer = client.post(url, content=body, headers=request_headers(body))
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            else:
                if answer.status_code == 200:
                    elapsed = time.monotonic() - server.started
                    parsed = read_answer(answer)
                    problem = check(parsed)  # type: ignore[operator]
                    if problem:
                        raise RuntimeError(
                            f"wrong answer from {url}: {problem}: {answer.text[:300]}"
                        )
                    return elapsed, parsed
                last = f"HTTP {answer.status_code}: {answer.text[:300]}"
            time.sleep(0.02)
    raise TimeoutError(
        f"no prediction from {url} within {timeout} s ({last}):\n{server.log_tail()}"
    )


def tree_memory(pid: int) -> dict[str, float]:
    """RSS and PSS in MB summed over ``pid`` and all its descendants, and how many there are.

    RSS counts pages shared by forked workers once per process; PSS splits them, so it is the
    fairer figure for servers that fork.
    """
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss = pss = 0
    counted = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = process.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            counted += 1
    return {"rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1), "processes": counted}


def stop(server: Server, timeout: float = 10) -> None:
    """SIGTERM to the group, ``timeout`` seconds, then SIGKILL to the group and to any descendant
    that left it (a figure is never read after this, so a short grace costs nothing)."""
    process = server.process
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        descendants = psutil.Process(process.pid).children(recursive=True)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    process.wait()
