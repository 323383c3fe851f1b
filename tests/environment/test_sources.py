"""Reading what a model needs from MLmodel, python_env.yaml, conda.yaml and requirements.txt."""

from __future__ import annotations

import pytest

from modelshelf.environment.errors import EnvironmentSpecError
from modelshelf.environment.sources import read_conda_file, read_model_requirements

ENV_DICT_MLMODEL = """\
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
"""


def write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_yaml", ".yaml").replace("_txt", ".txt")).write_text(text)
    return folder


def test_env_dict_prefers_python_env_and_follows_its_requirements_include(tmp_path):
    folder = write(
        tmp_path,
        MLmodel=ENV_DICT_MLMODEL,
        conda_yaml="dependencies:\n- python=3.11\n- pip:\n  - from-conda==1\n",
        python_env_yaml="python: 3.10.4\nbuild_dependencies: [pip==23.0]\n"
        "dependencies:\n- -r requirements.txt\n",
        requirements_txt="# comment\nnumpy>=1.20  # trailing\n--extra-index-url https://x/simple\n"
        "pandas\n",
    )
    found = read_model_requirements(folder)
    assert found.source == "python_env.yaml"
    assert found.requirements == ["numpy>=1.20", "pandas"]
    assert found.pip_options == ["--extra-index-url", "https://x/simple"]
    assert found.python_version == "3.10.4"
    assert found.conda_file == folder / "conda.yaml"


def test_env_string_names_the_conda_file_and_conda_is_preferred_when_asked(tmp_path):
    folder = write(
        tmp_path,
        MLmodel="flavors:\n  python_function:\n    env: my-conda.yaml\n",
        requirements_txt="numpy\n",
    )
    (folder / "my-conda.yaml").write_text("dependencies:\n- pip:\n  - scipy\n")
    assert read_model_requirements(folder, prefer="conda").requirements == ["scipy"]
    assert read_model_requirements(folder).requirements == ["numpy"]


def test_conda_pip_section_anywhere_and_conda_packages_mapped(tmp_path):
    path = tmp_path / "conda.yaml"
    path.write_text(
        "name: m\nchannels: [conda-forge]\ndependencies:\n"
        "- pip:\n  - --index-url https://private/simple\n  - shelftiny==0.1\n"
        "- python=3.9.7\n- conda-forge::numpy=1.24\n- scikit-learn=1.3.2=py39_0\n"
        "- py-xgboost>=1.7\n- pandas 2.0\n- cudatoolkit=11.8\n- libgomp\n- pip<24\n"
    )
    found = read_conda_file(path)
    assert found.requirements == [
        "shelftiny==0.1",
        "numpy==1.24.*",
        "scikit-learn==1.3.2",
        "xgboost>=1.7",
        "pandas==2.0.*",
    ]
    assert found.pip_options == ["--index-url", "https://private/simple"]
    assert found.python_version == "3.9.7"
    assert found.conda_only == ["cudatoolkit=11.8", "libgomp"]


def test_a_requirements_file_included_from_a_subfolder_of_the_model_is_read(tmp_path):
    folder = write(tmp_path / "m", requirements_txt="-r extra/more.txt\n-c extra/pins.txt\n")
    write(folder / "extra", more_txt="-r ../base.txt\nshelftiny\n", pins_txt="")
    write(folder, base_txt="numpy\n")
    assert read_model_requirements(folder).requirements == ["numpy", "shelftiny"]


def test_outside_file_is_refused_even_through_a_symlink(tmp_path):
    (tmp_path / "secret.txt").write_text("numpy\n")
    folder = write(tmp_path / "m", requirements_txt="-r link.txt\n")
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(EnvironmentSpecError, match="outside the model's folder"):
        read_model_requirements(folder)


def test_conda_names_map_to_pypi_only_when_known(tmp_path):
    path = tmp_path / "conda.yaml"
    path.write_text(
        "dependencies:\n- conda-forge::py-xgboost-cpu=3.2.0\n- py-xgboost-gpu\n- nomkl\n"
        "- scikit-learn>=1.3\n- shelf-conda-only=2.1\n- _py-xgboost-mutex=2.0\n- librosa\n"
    )
    found = read_conda_file(path)
    assert found.requirements == ["xgboost-cpu==3.2.0", "xgboost", "scikit-learn>=1.3", "librosa"]
    assert found.conda_unmapped == ["nomkl", "shelf-conda-only==2.1.*"]
    assert found.conda_only == ["_py-xgboost-mutex=2.0"]


def test_only_conda_yaml_is_used_for_pip_when_nothing_else_exists(tmp_path):
    folder = write(tmp_path, conda_yaml="dependencies:\n- python=3.11.2\n- pip:\n  - attrs\n")
    found = read_model_requirements(folder)
    assert (found.source, found.requirements, found.python_version) == (
        "conda.yaml",
        ["attrs"],
        "3.11.2",
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"MLmodel": "flavors:\n  python_function:\n    env: missing.yaml\n"}, "missing.yaml"),
        ({"MLmodel": "flavors:\n  python_function:\n    env: [a]\n"}, "a file name or a mapping"),
        ({"requirements_txt": "-r other.txt\n"}, "other.txt"),
        ({"requirements_txt": "--editable .\n"}, "unsupported pip option"),
        ({"requirements_txt": "-r ../outside.txt\n"}, "outside the model's folder"),
        ({"requirements_txt": "-c /etc/passwd\n"}, "outside the model's folder"),
        ({"requirements_txt": "--constraint=../../c.txt\n"}, "outside the model's folder"),
        (
            {"python_env_yaml": "dependencies: [-r /etc/hostname]\n"},
            "'-r /etc/hostname' names a file outside the model's folder",
        ),
        ({"conda_yaml": "dependencies: ['=1.0']\n"}, "not a conda package spec"),
        ({"conda_yaml": "dependencies: [\n"}, "not valid YAML"),
    ],
)
def test_unreadable_specs_name_the_file_and_the_problem(tmp_path, files, message):
    folder = write(tmp_path, **files)
    with pytest.raises(EnvironmentSpecError, match="cannot read the model's environment") as info:
        read_model_requirements(folder)
    assert message in str(info.value)
