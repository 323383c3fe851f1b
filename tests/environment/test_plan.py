"""The install plan against a known set of installed distributions (folders on a temp path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshelf.environment.plan import CONFLICT, IGNORED, INSTALL, SATISFIED, make_plan


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


def test_missing_packages_are_installed_and_the_servers_are_never_installed_again(tmp_path):
    base = installed(tmp_path / "site", ("mlflow-skinny", "3.2.0"), ("shelfdep", "1.0.0"))
    env = tmp_path / "env"
    installed(env, ("shelfenv", "1.0.0"))
    plan = make_plan(
        ["shelfdep==2.0.0", "shelftiny", "shelfdep>=1", "shelfenv==2.0"], None, env, base_paths=base
    )
    assert actions(plan) == {
        "shelfdep==2.0.0": CONFLICT,
        "shelftiny": INSTALL,
        "shelfdep>=1": SATISFIED,
        "shelfenv==2.0": INSTALL,  # what the env folder holds is replaced there
    }
    assert details(plan)["shelfdep==2.0.0"].startswith("the server has shelfdep 1.0.0; kept")
    assert plan.server == {"mlflow-skinny": "3.2.0", "shelfdep": "1.0.0"}


def details(plan) -> dict[str, str]:
    return {d.requirement: d.detail for d in plan.decisions}


# 19.5: equivalent distributions. Each case: what the server has, what the model asks, the
# action, the report's detail, and what goes to the installer.
@pytest.mark.parametrize(
    ("server", "requirements", "expected", "to_install"),
    [
        # MLflow writes both lines for an xgboost model; the CPU build meets both.
        (
            [("xgboost-cpu", "3.2.0")],
            ["xgboost==3.2.0", "xgboost-cpu==3.2.0"],
            {
                "xgboost==3.2.0": (
                    SATISFIED,
                    "xgboost-cpu 3.2.0 (the same package as xgboost) installed",
                ),
                "xgboost-cpu==3.2.0": (SATISFIED, "xgboost-cpu 3.2.0 installed"),
            },
            [],
        ),
        # Another version of the server's xgboost-cpu is never installed as `xgboost` beside it.
        (
            [("xgboost-cpu", "3.1.0")],
            ["xgboost==3.2.0"],
            {
                "xgboost==3.2.0": (
                    CONFLICT,
                    "the server has xgboost-cpu 3.1.0 (the same package as xgboost); kept",
                )
            },
            [],
        ),
        # Neither installed, both asked: one of them (the CPU build) is installed.
        (
            [],
            ["xgboost==3.2.0", "xgboost-cpu==3.2.0"],
            {
                "xgboost==3.2.0": (
                    SATISFIED,
                    "by xgboost-cpu==3.2.0, installed instead (the same package)",
                ),
                "xgboost-cpu==3.2.0": (INSTALL, "not installed"),
            },
            ["xgboost-cpu==3.2.0"],
        ),
        (
            [("xgboost", "3.2.0")],
            ["xgboost-cpu>=3"],
            {"xgboost-cpu>=3": (SATISFIED, "xgboost 3.2.0 (the same package as xgboost-cpu)")},
            [],
        ),
        (
            [("mlflow-skinny", "3.2.0")],
            ["mlflow==3.2.0"],
            {"mlflow==3.2.0": (SATISFIED, "mlflow-skinny 3.2.0 (the same package as mlflow)")},
            [],
        ),
        # `sklearn` is PyPI's placeholder for scikit-learn: met by it, never installed itself.
        (
            [("scikit-learn", "1.5.2")],
            ["sklearn"],
            {"sklearn": (SATISFIED, "scikit-learn 1.5.2 (the same package as sklearn) installed")},
            [],
        ),
        (
            [],
            ["sklearn"],
            {"sklearn": (INSTALL, "not installed; sklearn is scikit-learn")},
            ["scikit-learn"],
        ),
    ],
)
def test_equivalent_distributions(tmp_path, server, requirements, expected, to_install):
    base = installed(tmp_path / "site", *(server or [("mlflow-skinny", "3.2.0")]))
    plan = make_plan(requirements, None, tmp_path / "env", base_paths=base)
    found = {d.requirement: (d.action, d.detail) for d in plan.decisions}
    assert {r: a for r, (a, _) in found.items()} == {r: a for r, (a, _) in expected.items()}
    for requirement, (_, detail) in expected.items():
        assert found[requirement][1].startswith(detail), found[requirement][1]
    assert plan.to_install == to_install


def test_an_equivalent_in_the_env_folder_is_replaced_under_its_own_name(tmp_path):
    base = installed(tmp_path / "site", ("mlflow-skinny", "3.2.0"))
    env = tmp_path / "env"
    installed(env, ("xgboost-cpu", "3.1.0"))
    plan = make_plan(["xgboost==3.2.0"], None, env, base_paths=base)
    assert actions(plan) == {"xgboost==3.2.0": INSTALL}
    assert plan.to_install == ["xgboost-cpu==3.2.0"]  # never a second package over xgboost/


def test_conda_names_not_known_on_pypi_are_ignored_unless_the_server_has_them(tmp_path):
    base = installed(tmp_path / "site", ("mlflow-skinny", "3.2.0"), ("shelfconda", "1.0"))
    plan = make_plan(
        [], None, tmp_path / "env", base_paths=base, conda_unmapped=["nomkl", "shelfconda"]
    )
    assert actions(plan) == {"nomkl": IGNORED, "shelfconda": SATISFIED}
    assert "not installed from PyPI" in details(plan)["nomkl"]
    assert plan.to_install == []
