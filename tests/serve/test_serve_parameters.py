"""``modelshelf serve`` types ``--parameters`` as seldon-core does, without importing
``seldon_core.microservice`` (gunicorn, ``pkg_resources``) on a cold start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from seldon_core.microservice import parse_parameters

from modelshelf.errors import ConfigurationError
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
    "bad, refusal",
    [
        (
            {"name": "workers", "value": "three", "type": "INT"},
            "parameter workers='three' is not valid: expected a whole number (its type is INT)",
        ),
        (
            {"name": "ratio", "value": "a lot", "type": "FLOAT"},
            "parameter ratio='a lot' is not valid: expected a number (its type is FLOAT)",
        ),
        (
            {"name": "fast_path", "value": "maybe", "type": "BOOL"},
            "parameter fast_path='maybe' is not valid: expected a BOOL: true or false",
        ),
        (
            {"name": "method", "value": "predict", "type": "TEXT"},
            "parameter method='predict' is not valid: expected a type of STRING, INT, FLOAT, "
            "DOUBLE, BOOL, got 'TEXT'",
        ),
    ],
)
def test_a_bad_parameter_is_named_with_its_value_and_type(bad: dict, refusal: str) -> None:
    # seldon-core's parse_parameters raises a SeldonMicroserviceException whose text is
    # empty (or a bare KeyError 'TEXT'): a start-up traceback naming no parameter
    with pytest.raises(Exception) as theirs:
        parse_parameters([bad])
    assert bad["name"] not in str(theirs.value)
    with pytest.raises(ConfigurationError) as ours:
        user_parameters(json.dumps([bad]))
    assert str(ours.value) == refusal


@pytest.mark.parametrize(
    "text, detail",
    [
        ('[{"name": "model_uri", "value": "/m"', "Expecting ',' delimiter at 36"),
        ('{"model_uri": "/m"}', "objects"),
        ('[{"value": "/m", "type": "STRING"}]', "objects"),
    ],
)
def test_parameters_that_are_not_a_list_of_parameters_are_refused(text: str, detail: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        user_parameters(text)
    message = str(refused.value)
    assert message.startswith("argument --parameters=")
    assert 'expected a JSON list of {"name": …, "value": …, "type": …} objects' in message
    assert detail in message


def test_typing_parameters_does_not_import_seldon_cores_microservice() -> None:
    code = (
        "import sys, json; from modelshelf.serve.options import user_parameters; "
        f"user_parameters({json.dumps(json.dumps(VALID))}); "
        "print('seldon_core.microservice' in sys.modules, 'gunicorn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
