"""The install plan against a known set of installed distributions (folders on a temp path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshelf.environment.plan import CONFLICT, INSTALL, SATISFIED, make_plan


def installed(root: Path, *dists: tuple[str, str]) -> list[str]:
    for name, version in dists:
        info = root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return [str(root)]


def actions(plan) -> dict[str, str]:
    return {d.requirement: d.action for d in plan.decisions}


@pytest.mark.parametrize(
    ("requirement", "action"),
    [("mlflow==3.2.0", SATISFIED), ("mlflow>=3", SATISFIED), ("mlflow==2.9.2", CONFLICT)],
)
def test_mlflow_requirement_is_met_by_the_servers_mlflow_skinny(tmp_path, requirement, action):
    base = installed(tmp_path / "site", ("mlflow-skinny", "3.2.0"))
    plan = make_plan([requirement], None, tmp_path / "env", base_paths=base)
    assert actions(plan) == {requirement: action}
    assert plan.to_install == []


def test_full_mlflow_is_judged_by_itself_when_installed(tmp_path):
    base = installed(tmp_path / "site", ("mlflow", "3.1.0"), ("mlflow-skinny", "3.2.0"))
    plan = make_plan(["mlflow==3.2.0"], None, tmp_path / "env", base_paths=base)
    assert actions(plan) == {"mlflow==3.2.0": CONFLICT}


def test_other_packages_are_installed_when_missing_or_unsatisfied(tmp_path):
    base = installed(tmp_path / "site", ("mlflow-skinny", "3.2.0"), ("shelfdep", "1.0.0"))
    plan = make_plan(
        ["shelfdep==2.0.0", "shelftiny", "shelfdep>=1"], None, tmp_path / "env", base_paths=base
    )
    assert actions(plan) == {
        "shelfdep==2.0.0": INSTALL,
        "shelftiny": INSTALL,
        "shelfdep>=1": SATISFIED,
    }
