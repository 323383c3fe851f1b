"""``storage.folder_name``: the name a model URI gives its model, as a local folder would (a
remote model's local copy is a cache folder, ``<name>-<hash>``, no name for a model)."""

from __future__ import annotations

import pytest

from modelshelf.storage import folder_name


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("s3://models/sklearn/iris", "iris"),
        ("s3://models/sklearn/iris/", "iris"),
        ("gs://models/sklearn/iris/model.joblib", "iris"),
        ("s3://iris", "iris"),
        ("s3://models/model.joblib", "models"),
        ("https://host/iris/model.joblib?X-Amz-Signature=abc", "iris"),
        ("https://host/model.joblib", "model"),
        ("https://host/models/iris.tar.gz?sig=abc", "iris"),
        ("gs://models/iris.TGZ", "iris"),
        ("s3://models/iris.zip", "iris"),
    ],
)
def test_a_remote_uri_names_its_folder(tmp_path, uri, name):
    local = tmp_path / "iris-0123abcd"  # the cache folder's name is never the model's
    local.mkdir()
    (local / "model.joblib").write_bytes(b"model")  # what each URI downloaded
    assert folder_name(uri, local) == name


def test_a_local_path_names_its_own_folder(tmp_path):
    local = tmp_path / "flowers"
    local.mkdir()
    assert folder_name(str(local), local) == "flowers"
    assert folder_name(f"file://{local}", local) == "flowers"
