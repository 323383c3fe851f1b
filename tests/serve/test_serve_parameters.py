"""``modelshelf serve`` types ``--parameters`` as seldon-core does, without importing
``seldon_core.microservice`` (gunicorn, ``pkg_resources``) on a cold start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from seldon_core.microservice import parse_parameters

from modelshelf.serve.options import user_parameters

VALID = [
    {"name": "model_uri", "value": "/models/iris", "type": "STRING"},
    {"name": "workers", "value": "3", "type": "INT"},
    {"name": "ratio", "value": "0.25", "type": "FLOAT"},
    {"name": "scale", "value": "-1e3", "type": "DOUBLE"},
    {"name": "fast_path", "value": "False", "type": "BOOL"},
    {"name": "verbose", "value": "on", "type": "BOOL"},
]


def test_parameters_typed_as_seldon_core_types_them() -> None:
    ours = user_parameters(json.dumps(VALID))
    theirs = parse_parameters(VALID)
    assert ours == theirs
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "workers", "value": "three", "type": "INT"},
        {"name": "fast_path", "value": "maybe", "type": "BOOL"},
    ],
)
def test_bad_parameters_fail_with_seldon_cores_error(bad: dict) -> None:
    with pytest.raises(Exception) as theirs:  # whatever seldon-core raises
        parse_parameters([bad])
    with pytest.raises(theirs.type) as ours:
        user_parameters(json.dumps([bad]))
    assert str(ours.value) == str(theirs.value)


def test_typing_parameters_does_not_import_seldon_cores_microservice() -> None:
    code = (
        "import sys, json; from modelshelf.serve.options import user_parameters; "
        f"user_parameters({json.dumps(json.dumps(VALID))}); "
        "print('seldon_core.microservice' in sys.modules, 'gunicorn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
