"""The harness's peer installer (uv, pip as fallback) and its image-size reader, on stand-in
``uv`` and ``podman`` executables (real processes that record what they were asked), so no
package index, no peer and no image store is needed."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the harness is the repository's bench/ package, not installed

from bench import images, peers, report  # noqa: E402


def write_tool(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


@pytest.fixture
def fake_uv(tmp_path: Path) -> tuple[Path, Path]:
    """A ``uv`` that logs each call as a JSON line; ``uv venv ... FOLDER`` makes FOLDER/bin/python
    (a link to this interpreter, so the installer can read versions from it)."""
    calls = tmp_path / "uv-calls.jsonl"
    body = f"""\
{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> {calls}
if [ "$1" = venv ]; then
  for last in "$@"; do :; done
  mkdir -p "$last/bin" && ln -sf {sys.executable} "$last/bin/python"
fi
"""
    return write_tool(tmp_path / "tools", "uv", body), calls


def read_calls(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_uv_creates_the_venv_then_installs_each_step(
    tmp_path: Path, fake_uv: tuple[Path, Path]
) -> None:
    uv, calls = fake_uv
    env = peers.PeerEnv("demo", (("alpha==1.0", "beta<2"), ("--no-deps", "gamma==3")))
    root = tmp_path / "peers"

    status = peers.ensure(env, root, str(uv))

    assert status.ok and not status.cached and status.installer == "uv", status.error
    made, first, second = read_calls(calls)
    assert made[0] == "venv" and made[-1] == str(root / "demo") and "--seed" in made
    python = str(root / "demo" / "bin" / "python")
    flags = ["pip", "install", "--quiet", "--python", python]
    assert first == [*flags, "alpha==1.0", "beta<2"]
    assert second == [*flags, "--no-deps", "gamma==3"]
    assert "+ " + str(uv) in (root / "demo.install.log").read_text()


def test_after_the_install_the_servers_modules_are_imported_once(
    tmp_path: Path, fake_uv: tuple[Path, Path]
) -> None:
    uv, _ = fake_uv
    env = peers.PeerEnv("demo", (("alpha",),), warm=("json", "no_such_module_here"))
    status = peers.ensure(env, tmp_path / "peers", str(uv))
    assert status.ok, status.error  # a module that does not import costs a line, not the venv
    log = (tmp_path / "peers" / "demo.install.log").read_text()
    assert "+ warm imports ['json', 'no_such_module_here']: exit 0" in log
    assert "warm import no_such_module_here: ModuleNotFoundError" in log


def test_an_unchanged_venv_is_reused_and_a_new_step_is_added_alone(
    tmp_path: Path, fake_uv: tuple[Path, Path]
) -> None:
    uv, calls = fake_uv
    root = tmp_path / "peers"
    first = peers.PeerEnv("demo", (("alpha==1.0",),))
    assert peers.ensure(first, root, str(uv)).ok
    made_calls = len(read_calls(calls))

    again = peers.ensure(first, root, str(uv))
    assert again.ok and again.cached and again.seconds == 0.0
    assert len(read_calls(calls)) == made_calls

    grown = peers.PeerEnv("demo", (("alpha==1.0",), ("delta",)))
    assert peers.ensure(grown, root, str(uv)).ok
    (added,) = read_calls(calls)[made_calls:]
    assert added[:2] == ["pip", "install"] and added[-1] == "delta"


def test_a_failed_install_is_reported_with_the_installers_output(tmp_path: Path) -> None:
    uv = write_tool(tmp_path / "tools", "uv", 'echo "no such package: $*" >&2; exit 2\n')
    status = peers.ensure(peers.PeerEnv("broken", (("nosuch==9",),)), tmp_path / "peers", str(uv))
    assert not status.ok and not status.cached
    assert "no such package: venv" in status.error


def test_without_uv_the_venv_module_and_pip_install_the_steps(tmp_path: Path) -> None:
    env = peers.PeerEnv("demo", (("alpha",), ("beta",)))
    commands = peers.install_commands(env, tmp_path, "/usr/bin/python3.11", None)
    python = str(tmp_path / "demo" / "bin" / "python")
    assert commands == [
        ["/usr/bin/python3.11", "-m", "venv", "--clear", str(tmp_path / "demo")],
        [python, "-m", "pip", "install", "--quiet", "alpha"],
        [python, "-m", "pip", "install", "--quiet", "beta"],
    ]
    later = peers.install_commands(env, tmp_path, "/usr/bin/python3.11", None, first_step=1)
    assert later == [[python, "-m", "pip", "install", "--quiet", "beta"]]


def test_the_peer_pins_are_kept() -> None:
    steps = {env.name: [p for step in env.steps for p in step] for env in peers.peer_envs()}
    assert {"mlserver==1.7.1", "uvloop==0.21.0"} <= set(steps["mlserver"])
    assert "fastapi<0.120" in steps["mlflow"] and "uvicorn" in steps["mlflow"]
    assert any(p.startswith("kserve") for p in steps["kserve"])


def test_image_sizes_are_read_for_built_images_and_the_others_say_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A podman whose store holds only the sklearnserver image (123 MB).
    tools = tmp_path / "tools"
    write_tool(
        tools,
        "podman",
        'for last in "$@"; do :; done\n'
        'if [ "$1 $2" = "image inspect" ] && [ "$last" = "localhost/modelshelf/sklearnserver:dev" ]'
        "; then echo 123000000; exit 0; fi\n"
        'echo "image not known: $last" >&2; exit 125\n',
    )
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("IMAGE_BUILDER", "podman")
    monkeypatch.delenv("IMAGE_PREFIX", raising=False)
    monkeypatch.delenv("IMAGE_TAG", raising=False)

    found = images.measure()

    assert found["tool"] == "podman"
    by_name = {i["name"]: i for i in found["images"]}
    assert by_name["localhost/modelshelf/sklearnserver:dev"]["size_mb"] == 123.0
    missing = by_name["localhost/modelshelf/base:dev"]
    assert missing["size_mb"] is None and missing["state"] == images.NOT_BUILT
    assert set(by_name) >= {f"localhost/modelshelf/{n}:dev" for n in images.IMAGES}
    text = "\n".join(report._images({"images": found}))
    assert "| `localhost/modelshelf/sklearnserver:dev` | 123 |" in text
    assert "| `localhost/modelshelf/xgboostserver:dev` | not built — run `make images` |" in text


def test_an_unknown_image_builder_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_BUILDER", "kaniko")
    found = images.measure()
    assert found["images"] == [] and "IMAGE_BUILDER=kaniko" in found["error"]
    assert "Not measured: IMAGE_BUILDER=kaniko" in "\n".join(report._images({"images": found}))


def _run(round_index: int, single: float, batch: float) -> dict:
    def load(rate: float, rows: int) -> dict:
        return {"requests_per_s": rate, "rows_per_s": rate * rows, "p50_ms": 1.0, "p99_ms": 2.0,
                "errors": 0}  # fmt: skip

    return {"round": round_index, "cold_start_s": 1.0,
            "memory": {"rss_mb": 100.0, "pss_mb": 50.0, "processes": 2},
            "single": load(single, 1), "batch": load(batch, 10)}  # fmt: skip


def _raw_report(runs: dict[str, list[dict]], **extra: object) -> dict:
    meta = {
        name: {"label": name, "family": "sklearn", "role": "ours", "workers": 1,
               "reference": name}
        for name in runs
    }  # fmt: skip
    return {
        "started": "now", "git": "abc", "seconds": 10.0, "phases": {"rest": 8.0},
        "machine": {"cores": 2, "cpu": "", "memory_gb": 1, "kernel": "k", "python": "3.11",
                    "load_average_at_start": [0], "load_average_at_end": [0]},
        "settings": {"rounds": 2, "wrk": "wrk", "batch_rows": 10, "connections": 4},
        "versions": {"ours": {}}, "rest": {"systems": meta, "runs": runs}, **extra,
    }  # fmt: skip


def test_what_could_not_be_measured_is_listed() -> None:
    raw = _raw_report(
        {"sklearn-w1": [_run(1, 100, 10)], "xgboost-w1": [{"round": 1, "error": "boom"}]},
        unavailable={"mlserver-sklearn-pw1": "BENCH_PEERS=0"},
        images={"tool": "podman", "images": [
            {"name": "x/base:dev", "size_mb": 400.0, "state": "built"},
            {"name": "x/sklearnserver:dev", "size_mb": None, "state": images.NOT_BUILT},
        ]},
        storage={"unavailable": "`modelshelf fetch` does not exist yet"},
    )  # fmt: skip
    raw["summary"] = report.summarize(raw)
    text = report.render(raw)
    section = text.split("## What this run could not measure")[1].split("## ")[0]
    assert "KServe's sklearnserver: not on PyPI" in section
    assert "- `mlserver-sklearn-pw1`: BENCH_PEERS=0." in section
    assert "- `xgboost-w1`: failed in every round: boom" in section
    assert "- Image sizes of `x/sklearnserver:dev`: not built — run `make images`." in section
    assert "`x/base:dev`" not in section
    assert "- Download throughput: `modelshelf fetch` does not exist yet." in section
