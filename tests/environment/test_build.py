"""The pip builder for real: wheels built here, installed by pip into a separate folder, the
test's own virtualenv unchanged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelshelf.environment import EnvironmentBuildError, Settings, build
from wheels import build_wheel

pytestmark = pytest.mark.timeout(240)


def pip_freeze() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(
        folder, "shelftiny", "0.1.0", "def double(x):\n    return x * 2\n", ("shelfdep>=1,<2",)
    )
    build_wheel(folder, "shelfdep", "1.0.0", "VERSION = 1\n", ("numpy",))
    build_wheel(folder, "shelfdep", "2.0.0", "VERSION = 2\n")
    build_wheel(folder, "shelfold", "1.0.0", "", ("numpy<1.0",))
    return folder


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory):
    """One environment folder the first two tests fill in turn (as restarts of one pod would)."""
    return tmp_path_factory.mktemp("shared-env")


@pytest.fixture(scope="module")
def frozen_before():
    before = pip_freeze()
    yield before
    after = pip_freeze()
    changed = set(before.splitlines()) ^ set(after.splitlines())
    assert after == before, f"the test's own virtualenv changed: {sorted(changed)}"


def model(folder, requirements: str, python: str = "3.11"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    env:\n      virtualenv: python_env.yaml\n"
    )
    (folder / "python_env.yaml").write_text(
        f"python: {python}\nbuild_dependencies: [pip]\ndependencies: [-r requirements.txt]\n"
    )
    (folder / "requirements.txt").write_text(requirements)
    return folder


def settings(tmp_path, wheels, **kwargs) -> Settings:
    kwargs.setdefault("installer", "pip")
    return Settings(env_dir=tmp_path / "env", wheels_dir=wheels, offline=True, **kwargs)


def imported_in_env(env_dir, code: str) -> subprocess.CompletedProcess:
    """``code`` run by this interpreter with the environment folder activated."""
    script = f"from modelshelf.environment import activate; activate({str(env_dir)!r}); {code}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_missing_package_and_its_dependency_installed_then_nothing_on_rerun(
    shared_env, wheels, frozen_before
):
    folder = model(shared_env / "m", "shelftiny==0.1.0\nnumpy>=1.20\n")
    first = build(folder, settings(shared_env, wheels))
    assert sorted(r.pin for r in first.installed) == ["shelfdep==1.0.0", "shelftiny==0.1.0"]
    assert [d.requirement for d in first.plan.of("satisfied")] == ["numpy>=1.20"]
    assert first.installer == "pip"
    text = "\n".join(first.lines())
    assert "installed  shelftiny==0.1.0" in text and "1 satisfied, 2 installed" in text

    ran = imported_in_env(first.env_dir, "import shelftiny, numpy; print(shelftiny.double(21))")
    assert ran.stdout.strip() == "42", ran.stderr
    assert not (first.env_dir / "numpy").exists()  # the server's numpy is used, not reinstalled
    plain = subprocess.run([sys.executable, "-c", "import shelftiny"], capture_output=True)
    assert plain.returncode != 0  # installed into the environment folder only

    again = build(folder, settings(shared_env, wheels))
    assert again.installed == [] and again.installer == ""  # no installer run at all
    assert {d.requirement for d in again.plan.of("satisfied")} == {
        "shelftiny==0.1.0",
        "numpy>=1.20",
    }


def test_newer_version_replaces_the_one_in_the_environment_folder(
    shared_env, wheels, frozen_before
):
    assert (shared_env / "env" / "shelfdep-1.0.0.dist-info").is_dir()  # from the test above
    report = build(model(shared_env / "b", "shelfdep==2.0.0\n"), settings(shared_env, wheels))
    assert [r.pin for r in report.installed] == ["shelfdep==2.0.0"]
    infos = sorted(p.name for p in report.env_dir.glob("shelfdep-*.dist-info"))
    assert infos == ["shelfdep-2.0.0.dist-info"]
    ran = imported_in_env(report.env_dir, "import shelfdep; print(shelfdep.VERSION)")
    assert ran.stdout.strip() == "2", ran.stderr


def test_server_packages_are_kept_and_reported_strict_mode_refuses(tmp_path, wheels, frozen_before):
    folder = model(tmp_path / "m", "numpy==1.0.0\nseldon-core==1.17.0\n")
    report = build(folder, settings(tmp_path, wheels))
    conflicts = report.plan.of("conflict")
    assert [d.requirement for d in conflicts] == ["numpy==1.0.0", "seldon-core==1.17.0"]
    assert "the server runs on seldon-core 1.18.2" in conflicts[1].detail
    assert report.installed == []
    with pytest.raises(EnvironmentBuildError, match="MODELSHELF_ENV_STRICT") as info:
        build(folder, settings(tmp_path, wheels, strict=True))
    assert "numpy==1.0.0" in str(info.value)


def test_a_dependency_that_would_replace_a_server_package_fails_with_pips_message(
    tmp_path, wheels, frozen_before
):
    with pytest.raises(EnvironmentBuildError) as info:
        build(model(tmp_path / "m", "shelfold==1.0.0\n"), settings(tmp_path, wheels))
    message = str(info.value)
    assert "shelfold==1.0.0" in message and "pip failed" in message
    assert "numpy" in message  # pip names the conflict


def test_unknown_package_fails_with_the_requirement_and_pips_message(
    tmp_path, wheels, frozen_before
):
    with pytest.raises(EnvironmentBuildError) as info:
        build(model(tmp_path / "m", "shelfmissing==3.1\n"), settings(tmp_path, wheels))
    assert "cannot install shelfmissing==3.1" in str(info.value)
    assert "No matching distribution found for shelfmissing==3.1" in str(info.value)


def test_markers_and_other_python_versions(tmp_path, wheels):
    folder = model(tmp_path / "m", 'pywin32==306; sys_platform == "win32"\n', python="3.8.10")
    report = build(folder, settings(tmp_path, wheels))
    assert [d.requirement for d in report.plan.of("ignored")] == [
        'pywin32==306; sys_platform == "win32"'
    ]
    text = "\n".join(report.lines())
    assert "WARNING: the model was built with Python 3.8.10" in text


def test_uv_resolves_and_installs_when_asked(tmp_path, wheels, frozen_before):
    """uv resolves too: the missing package and its missing dependency, not the server's numpy."""
    report = build(
        model(tmp_path / "m", "shelftiny==0.1.0\n"), settings(tmp_path, wheels, installer="uv")
    )
    assert report.installer == "uv"
    assert sorted(r.pin for r in report.installed) == ["shelfdep==1.0.0", "shelftiny==0.1.0"]
    ran = imported_in_env(report.env_dir, "import shelftiny, shelfdep; print(shelfdep.VERSION)")
    assert ran.stdout.strip() == "1", ran.stderr
    assert not (report.env_dir / "numpy").exists()


def test_uv_failures_name_the_requirement_with_uvs_message(tmp_path, wheels, frozen_before):
    with pytest.raises(EnvironmentBuildError) as info:
        build(
            model(tmp_path / "m", "shelfold==1.0.0\n"), settings(tmp_path, wheels, installer="uv")
        )
    message = str(info.value)
    assert "cannot install shelfold==1.0.0" in message and "uv failed" in message
    assert "numpy" in message  # uv names the conflict with the server's numpy
