"""Which file in a model folder is the model."""

import pytest

from modelshelf.errors import ModelLoadError, ModelNotFoundError
from modelshelf.model_files import find_model_file

NAMES = ("model.joblib", "model.pkl")
SUFFIXES = (".joblib", ".pkl")


def touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"x")


def test_conventional_name_wins_over_other_candidates(tmp_path):
    touch(tmp_path, "encoder.pkl", "model.pkl", "model.joblib")
    assert find_model_file(tmp_path, NAMES, SUFFIXES).name == "model.joblib"


def test_single_file_with_a_known_suffix(tmp_path):
    touch(tmp_path, "classifier.PKL", "metadata.yaml")
    assert find_model_file(tmp_path, NAMES, SUFFIXES).name == "classifier.PKL"


def test_explicit_model_file(tmp_path):
    touch(tmp_path, "a.pkl", "b.pkl")
    assert find_model_file(tmp_path, NAMES, SUFFIXES, model_file="b.pkl").name == "b.pkl"


def test_a_file_uri_is_the_model_itself(tmp_path):
    touch(tmp_path, "whatever.bin")
    assert find_model_file(tmp_path / "whatever.bin", NAMES, SUFFIXES).name == "whatever.bin"


def test_several_candidates_name_them_and_the_parameter(tmp_path):
    touch(tmp_path, "a.pkl", "b.joblib")
    with pytest.raises(ModelNotFoundError, match=r"a\.pkl, b\.joblib.*model_file"):
        find_model_file(tmp_path, NAMES, SUFFIXES, uri="s3://bucket/m")


def test_nothing_found_lists_the_folder_and_the_uri(tmp_path):
    touch(tmp_path, "notes.txt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ModelNotFoundError) as caught:
        find_model_file(tmp_path, NAMES, SUFFIXES, uri="s3://bucket/m")
    assert "s3://bucket/m" in str(caught.value)
    assert "[notes.txt, sub/]" in str(caught.value)
    assert isinstance(caught.value, ModelLoadError)


def test_missing_explicit_file_lists_the_folder(tmp_path):
    touch(tmp_path, "a.pkl")
    with pytest.raises(ModelNotFoundError, match=r"'b\.pkl' not found.*\[a\.pkl\]"):
        find_model_file(tmp_path, NAMES, SUFFIXES, model_file="b.pkl")
