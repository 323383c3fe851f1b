"""The registry of servers is the one list: the files generated from it are committed as
generated, and every entry has its class, folder, extra, image and Seldon implementation."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from modelshelf import registry
from modelshelf.graph import manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("relative", list(registry.GENERATED))
def test_committed_files_equal_what_the_registry_generates(relative):
    render = registry.GENERATED[relative]
    assert (REPO / relative).read_text() == render(), (
        f"{relative} differs from the registry: run python3 shared/modelshelf/registry.py write"
    )


def test_the_readme_table_is_the_registry_s():
    readme = (REPO / "README.md").read_text()
    assert registry.with_readme_table(readme) == readme
    for server in registry.SERVERS:
        assert f"`{server.class_name}`" in registry.readme_table()


@pytest.mark.parametrize("server", registry.SERVERS, ids=lambda s: s.name)
def test_every_server_has_its_class_folder_extra_and_seldon_entry(server):
    module = importlib.import_module(server.module)
    cls = getattr(module, server.class_name)
    entry = REPO / "servers" / server.name / f"{server.class_name}.py"
    assert entry.is_file(), f"{entry} is missing"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert server.extra in extras
    for package in server.framework_packages:
        assert any(req.startswith(package) for req in extras[server.extra]), package
    assert manifest.MODELSHELF_SERVERS[server.seldon_implementation] == (
        server.name,
        f"modelshelf/{server.name}:{registry.VERSION}",
    )
    assert manifest.MODELSHELF_IMAGES[server.name] == server.name
    assert server.seldon_implementation in manifest.IMPLEMENTATIONS
    assert cls.__name__ == server.class_name


def test_build_sh_builds_every_registered_server_from_one_dockerfile():
    names = subprocess.run(
        [sys.executable, str(REPO / "shared/modelshelf/registry.py"), "images"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert names == [server.name for server in registry.SERVERS]
    args = subprocess.run(
        [
            sys.executable,
            str(REPO / "shared/modelshelf/registry.py"),
            "build-args",
            "xgboostserver",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "SERVER=xgboostserver" in args
    assert "EXTRA=xgboost" in args
    assert "MODEL_NAME=XGBoostServer" in args
    per_server = [p.name for p in (REPO / "images").glob("*server.Dockerfile")]
    assert per_server == ["server.Dockerfile"]
