"""``modelshelf.supervision`` with real child processes: SIGTERM, the grace period, SIGKILL, exit
codes in the shell's convention, readiness, and no process or zombie left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from modelshelf.supervision import ChildNotReadyError, Supervisor, group_members

IGNORES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def zombies_of(pid: int) -> list[int]:
    """Children of ``pid`` that have exited and were never reaped."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == b"Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period():
    supervisor = Supervisor(grace_seconds=1)
    child = supervisor.start_command("stubborn", python(IGNORES_SIGTERM), stdout=subprocess.PIPE)
    assert child.handle.stdout.readline().strip() == b"ready"  # its SIG_IGN is in place
    started = time.monotonic()
    supervisor.stop([child])
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 4
    assert child.returncode == -signal.SIGKILL
    assert child.exit_code == 128 + signal.SIGKILL
    assert child.describe_exit() == "signal SIGKILL"
    assert not alive(child.pid)  # reaped, not a zombie
    assert not zombies_of(os.getpid())


def test_a_child_that_stops_on_sigterm_ends_before_the_grace_period_with_its_code():
    supervisor = Supervisor(grace_seconds=30)
    code = """
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    print("ready", flush=True)
    time.sleep(60)
    """
    child = supervisor.start_command("graceful", python(code), stdout=subprocess.PIPE)
    assert child.handle.stdout.readline().strip() == b"ready"
    started = time.monotonic()
    supervisor.stop([child])
    assert time.monotonic() - started < 5
    assert (child.returncode, child.exit_code, child.describe_exit()) == (3, 3, "code 3")


@pytest.mark.parametrize(
    ("code", "returncode", "exit_code"),
    [
        ("raise SystemExit(0)", 0, 0),
        ("raise SystemExit(7)", 7, 7),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -15, 143),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", -11, 139),
    ],
)
def test_exit_codes_propagate_in_the_shells_convention(code, returncode, exit_code):
    supervisor = Supervisor(grace_seconds=5)
    child = supervisor.start_command("exits", python(code))
    while child.poll() is None:
        supervisor.wait(0.05)
    assert (child.returncode, child.exit_code) == (returncode, exit_code)
    assert supervisor.children == []  # reaped and forgotten


def _exit_with(code: int) -> None:
    sys.exit(code)


def test_a_forked_callables_exit_code_and_readiness():
    supervisor = Supervisor(grace_seconds=5)
    failing = supervisor.fork("failing", _exit_with, 5)
    reporting = supervisor.fork("reporting", _report_ready_then_wait, report_ready=True)
    supervisor.wait_ready([reporting], lambda child: child.is_ready(), timeout=30)
    assert reporting.poll() is None
    supervisor.stop([failing, reporting])
    assert failing.exit_code == 5
    assert reporting.exit_code == 128 + signal.SIGTERM  # default SIGTERM handling in the child
    assert not zombies_of(os.getpid())


def test_the_stop_line_counts_only_the_processes_it_signals(caplog):
    """A child that ended before the stop was counted in the first wave but not in the total:
    "SIGTERM to 4 of 3 processes" at a server's shutdown."""
    supervisor = Supervisor(grace_seconds=5)
    ended = supervisor.start_command("ended", python("pass"))
    running = supervisor.fork("running", _report_ready_then_wait, report_ready=True)
    supervisor.wait_ready([running], lambda child: child.is_ready(), timeout=30)
    ended.handle.wait()
    with caplog.at_level("INFO", logger="modelshelf.supervision"):
        supervisor.stop([ended, running])
    assert "stopping ended, running: SIGTERM to 1 of 1 processes first" in caplog.text
    assert not zombies_of(os.getpid())


def _report_ready_then_wait(ready) -> None:
    ready.set()
    time.sleep(60)


def test_a_child_that_exits_before_it_is_ready_is_named():
    supervisor = Supervisor(grace_seconds=5)
    child = supervisor.start_command("early", python("raise SystemExit(4)"))
    with pytest.raises(ChildNotReadyError) as caught:
        supervisor.wait_ready([child], lambda _child: False, timeout=30, waiting_for="healthy")
    assert caught.value.child is child
    assert caught.value.reason == "exited before it was ready (exit code 4)"


def test_a_child_not_ready_at_the_deadline_is_named(tmp_path):
    supervisor = Supervisor(grace_seconds=5)
    child = supervisor.start_command("slow", python(IGNORES_SIGTERM), stdout=subprocess.DEVNULL)
    try:
        with pytest.raises(ChildNotReadyError, match="slow not ready after 0 s"):
            supervisor.wait_ready([child], lambda _child: False, timeout=0.3)
    finally:
        supervisor.grace_seconds = 0.1
        supervisor.stop([child])
    assert child.exit_code == 128 + signal.SIGKILL


def test_the_whole_session_is_stopped_and_nothing_is_left():
    """A shell whose background job ignores SIGTERM: stopping the shell leaves the job behind in
    its session; it gets SIGTERM, then SIGKILL, and nothing is left as a zombie."""
    supervisor = Supervisor(grace_seconds=5)
    script = "trap '' TERM; sleep 60 & trap - TERM; echo $!; wait"
    child = supervisor.start_command("shell", ["sh", "-c", script], stdout=subprocess.PIPE)
    job = int(child.handle.stdout.readline())
    assert job in child.processes()
    started = time.monotonic()
    supervisor.stop([child])
    assert time.monotonic() - started < 5  # the shell at once, the job after 2 s (leftovers)
    assert child.exit_code == 128 + signal.SIGTERM
    assert not alive(job) or Path(f"/proc/{job}/stat").read_bytes().split()[2] == b"Z"
    assert not group_members(child.pid)
    assert not zombies_of(os.getpid())


def test_a_second_stop_signal_kills_at_once():
    supervisor = Supervisor(grace_seconds=60)
    with supervisor.watching_signals():
        child = supervisor.start_command(
            "stubborn", python(IGNORES_SIGTERM), stdout=subprocess.PIPE
        )
        assert child.handle.stdout.readline().strip() == b"ready"
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        supervisor.stop([child])
        elapsed = time.monotonic() - started
    assert elapsed < 10
    assert supervisor.stop_signals == [signal.SIGTERM]
    assert child.exit_code == 128 + signal.SIGKILL


def _handle_sigterm_then_exit() -> None:
    """A worker that installs its own handler (as uvicorn does) and gets a signal."""
    signal.signal(signal.SIGTERM, lambda *_: None)
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_forked_childs_own_signals_do_not_reach_the_parent():
    supervisor = Supervisor(grace_seconds=5)
    with supervisor.watching_signals():
        child = supervisor.fork("worker", _handle_sigterm_then_exit)
        while child.poll() is None:
            supervisor.wait(1)
        assert not supervisor.stop_requested
    assert child.exit_code == 0


REAPER = """
import subprocess, sys, time
from modelshelf.supervision import Supervisor

supervisor = Supervisor(grace_seconds=5, reap_orphans=True)
with supervisor.watching_signals():
    # The shell starts a job in its session and exits: the job is orphaned to us.
    child = supervisor.start_command("shell", ["sh", "-c", "sleep 60 & echo $!"],
                                     stdout=subprocess.PIPE)
    print(int(child.handle.stdout.readline()), flush=True)
    while child.poll() is None:
        supervisor.wait(1)
    supervisor.stop_leftovers(child)
    print(child.exit_code, flush=True)
    input()  # the test looks for zombies now
"""


def test_orphans_are_reaped_as_pid_1_would():
    process = subprocess.Popen(
        [sys.executable, "-c", REAPER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        job = int(process.stdout.readline())
        assert process.stdout.readline().strip() == "0"
        assert not alive(job)  # stopped and reaped by the subreaper: not even a zombie
        assert zombies_of(process.pid) == []
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.wait()
