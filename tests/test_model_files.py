"""Which file in a model folder is the model."""

import pickle
import struct

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelshelf.errors import ModelLoadError, ModelNotFoundError
from modelshelf.model_files import find_model_file, load_pickled

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


@pytest.mark.parametrize(
    ("compress", "keep", "cause"),
    [
        (0, 3, struct.error),  # "unpack requires a buffer of 8 bytes"
        (0, 0.5, IndexError),  # "index out of range": joblib's array reader, cut mid-array
        (3, 0.5, pickle.UnpicklingError),  # joblib's zlib-compressed file, cut in half
    ],
)
def test_a_truncated_pickle_names_the_file_and_what_was_expected(tmp_path, compress, keep, cause):
    """A partial copy reached the client as ``struct.error: unpack requires a buffer of 8
    bytes``, naming neither the file nor what was wrong with it."""
    estimator = LogisticRegression().fit(np.arange(20.0).reshape(10, 2), np.arange(10) % 2)
    whole = tmp_path / "whole.joblib"
    joblib.dump(estimator, whole, compress=compress)
    data = whole.read_bytes()
    cut = data[: keep if isinstance(keep, int) else int(len(data) * keep)]
    (tmp_path / "model.joblib").write_bytes(cut)
    uri = "https://models.example/iris/model.joblib?X-Amz-Signature=very-secret-value"
    with pytest.raises(ModelLoadError) as failed:
        load_pickled(tmp_path / "model.joblib", uri)
    message = str(failed.value)
    assert message.startswith("cannot load the model from https://models.example/iris/model.joblib")
    assert "very-secret-value" not in message
    assert f"model.joblib ({len(cut)} bytes) looks truncated or corrupt" in message
    assert "expected a complete pickle or joblib file" in message
    assert isinstance(failed.value.__cause__, cause)  # unpickling's own error, kept
