"""``storage.folder_name``: the name a model URI gives its model, as a local folder would (a
remote model's local copy is a cache folder, ``<name>-<hash>``, no name for a model)."""

from __future__ import annotations

import pytest

from modelshelf.storage import folder_name


@pytest.mark.parametrize(
    ("uri", "downloaded", "name"),
    [
        ("s3://models/sklearn/iris", ["model.joblib"], "iris"),
        ("s3://models/sklearn/iris/", ["model.joblib"], "iris"),
        ("gs://models/sklearn/iris/model.joblib", ["model.joblib"], "iris"),
        ("s3://iris", ["model.joblib"], "iris"),
        ("s3://models/model.joblib", ["model.joblib"], "models"),
        ("https://host/iris/model.joblib?X-Amz-Signature=abc", ["model.joblib"], "iris"),
        ("https://host/model.joblib", ["model.joblib"], "model"),
        ("https://host/models/iris.tar.gz?sig=abc", ["model.joblib"], "iris"),
        ("gs://models/iris.TGZ", ["model.joblib"], "iris"),
        ("s3://models/iris.zip", ["model.joblib"], "iris"),
    ],
)
def test_a_remote_uri_names_its_folder(tmp_path, uri, downloaded, name):
    local = tmp_path / "iris-0123abcd"  # the cache folder's name is never the model's
    local.mkdir()
    for file in downloaded:
        (local / file).write_bytes(b"model")
    assert folder_name(uri, local) == name


def test_a_local_path_names_its_own_folder(tmp_path):
    local = tmp_path / "flowers"
    local.mkdir()
    assert folder_name(str(local), local) == "flowers"
    assert folder_name(f"file://{local}", local) == "flowers"
