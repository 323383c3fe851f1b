"""Property-based fuzz of the Seldon protocol against real servers on both front ends.

hypothesis generates JSON bodies -- SeldonMessages that are nearly right (each field of the
right or a wrong type, tensors whose shape may not fit, rows of any values, meta of any shape),
feedback and aggregate bodies, arbitrary JSON, and bytes that are not JSON at all -- and posts
each to every Seldon path of SKLearnServer under ``seldon-core-microservice`` and under
``modelshelf serve``. No body may get a 5xx, and both servers must go on answering. Fixed seed
(``derandomize``) and a bounded number of examples, so a run is repeatable and short.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
from frontends import MODELSHELF, SELDON, Launch, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microservice import SERVERS, seldon_parameters

#: Bodies per front end (each is sent to both).
EXAMPLES = 500
#: Bodies for the unguarded class (modelshelf serve against seldon-core-microservice).
UNGUARDED_EXAMPLES = 300
#: The Seldon paths a MODEL answers (``/transform-*`` on a classifier is a deployment mistake,
#: a 500 by design).
PATHS = (
    "/api/v1.0/predictions",
    "/api/v0.1/predictions",
    "/predict",
    "/route",
    "/aggregate",
    "/api/v1.0/feedback",
)
ND = {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
rows = st.lists(st.lists(numbers | scalars, min_size=0, max_size=6), max_size=5)
tensors = st.fixed_dictionaries(
    {},
    optional={
        "shape": st.lists(st.integers(-2, 6), max_size=4) | json_values,
        "values": st.lists(numbers, max_size=24) | json_values,
    },
)
data = st.fixed_dictionaries(
    {},
    optional={
        "names": st.lists(st.text(max_size=6), max_size=5) | json_values,
        "ndarray": rows | json_values,
        "tensor": tensors | json_values,
        "tftensor": json_values,
    },
)
metrics = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "key": st.text(max_size=8) | json_values,
            "type": st.sampled_from(["COUNTER", "GAUGE", "TIMER", "OTHER"]) | json_values,
            "value": numbers | json_values,
            "tags": st.dictionaries(st.text(max_size=5), st.text(max_size=5)) | json_values,
        },
    ),
    max_size=3,
)
meta = st.fixed_dictionaries(
    {},
    optional={
        "puid": st.text(max_size=8) | json_values,
        "tags": st.dictionaries(st.text(max_size=6), json_values, max_size=3) | json_values,
        "routing": st.dictionaries(st.text(max_size=6), st.integers(-2, 3)) | json_values,
        "requestPath": st.dictionaries(st.text(max_size=6), st.text(max_size=6)) | json_values,
        "metrics": metrics | json_values,
    },
)
base64_text = st.binary(max_size=24).map(lambda raw: base64.b64encode(raw).decode())
messages = st.fixed_dictionaries(
    {},
    optional={
        "meta": meta | json_values,
        "data": data | json_values,
        "jsonData": json_values,
        "strData": st.text(max_size=20) | json_values,
        "binData": base64_text | st.text(max_size=12) | json_values,
    },
)
aggregates = st.fixed_dictionaries({}, optional={"seldonMessages": st.lists(messages, max_size=3)})
feedback = st.fixed_dictionaries(
    {},
    optional={
        "request": messages | json_values,
        "response": messages | json_values,
        "truth": messages | json_values,
        "reward": numbers | json_values,
    },
)
# Nearly valid: a message the iris model can answer, then perhaps one field replaced.
row = st.lists(numbers, min_size=4, max_size=4)
valid_data = st.lists(row, min_size=1, max_size=4).flatmap(
    lambda rows: st.sampled_from(
        [
            {"ndarray": rows},
            {"names": ["a", "b", "c", "d"], "ndarray": rows},
            {"tensor": {"shape": [len(rows), 4], "values": [v for r in rows for v in r]}},
            {"tensor": {"shape": [-1, 4], "values": [v for r in rows for v in r]}},
        ]
    )
)
valid_meta = st.fixed_dictionaries(
    {},
    optional={
        "puid": st.text(max_size=8),
        "tags": st.dictionaries(st.text(max_size=5), scalars, max_size=3),
        "requestPath": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    },
)
valid_messages = st.fixed_dictionaries({"data": valid_data}, optional={"meta": valid_meta})
near_valid = st.one_of(
    valid_messages,
    valid_messages,
    st.builds(
        lambda message, key, value: {**message, key: value},
        valid_messages,
        st.sampled_from(["meta", "data", "jsonData", "strData", "binData"]),
        json_values,
    ),
)
json_bodies = (messages | aggregates | feedback | json_values).map(
    lambda value: json.dumps(value).encode()
)
raw_bodies = (
    st.binary(max_size=64)
    | st.integers(1, 3000).map(lambda depth: b'{"data": {"ndarray": ' + b"[" * depth)
    | st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth)
    | json_bodies.map(lambda encoded: encoded[: len(encoded) // 2])  # cut short
)


def encoded(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return strategy.map(lambda value: json.dumps(value).encode())


#: Half the requests nearly valid for their path (they reach the model), half anything at all.
requests = st.one_of(
    st.tuples(st.sampled_from(PATHS[:4]), encoded(near_valid)),
    st.tuples(
        st.just("/aggregate"),
        encoded(st.lists(near_valid, max_size=3).map(lambda found: {"seldonMessages": found})),
    ),
    st.tuples(
        st.just("/api/v1.0/feedback"),
        encoded(
            st.builds(lambda sent, reward: {"request": sent, "reward": reward}, near_valid, numbers)
        ),
    ),
    st.tuples(st.sampled_from(PATHS), json_bodies | raw_bodies),
    st.tuples(st.sampled_from(PATHS), json_bodies | raw_bodies),
    st.tuples(st.sampled_from(PATHS), json_bodies | raw_bodies),
)


@pytest.fixture(scope="module")
def both(sklearn_models):
    launch = Launch(
        "SKLearnServer",
        SERVERS / "sklearnserver",
        seldon_parameters(model_uri=sklearn_models["iris"]),
    )
    with running(launch, [SELDON, MODELSHELF]) as services:
        yield services


def test_no_generated_body_gets_a_5xx_and_the_servers_keep_serving(both):
    statuses: Counter = Counter()
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests)
    def post_everywhere(request: tuple[str, bytes]) -> None:
        path, content = request
        for name, service in zip(("seldon", "modelshelf"), both, strict=True):
            response = service.client.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            statuses[name, response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{name} {path} {content[:300]!r} -> {response.text[:300]}")

    post_everywhere()
    print("fuzz statuses:", dict(sorted(statuses.items())))
    assert not failures, f"{len(failures)} 5xx:\n" + "\n".join(failures[:20])
    sent: Counter = Counter()
    for (front_end, _), count in statuses.items():
        sent[front_end] += count
    assert sent["seldon"] == sent["modelshelf"] >= EXAMPLES * 3 // 4, sent
    for service in both:
        assert service.post("/api/v1.0/predictions", ND).status_code == 200
        assert service.process.poll() is None
        assert "Traceback" not in service.log()


def _parsed(response) -> object:
    if "json" not in response.headers.get("content-type", ""):
        return response.content
    return json.loads(response.content, parse_constant=lambda name: f"<{name}>")


def test_an_unguarded_class_gets_seldon_core_s_answers_from_modelshelf_serve():
    """A user class that does not opt into the guard: ``modelshelf serve`` stays a drop-in, the
    same status and body as ``seldon-core-microservice`` for every generated request (its 500s
    included: they are seldon-core's)."""
    from frontends import COMPONENTS

    statuses: Counter = Counter()
    differences: list[str] = []
    with running(Launch("ScoringModel", COMPONENTS), [SELDON, MODELSHELF]) as (seldon, ours):

        @settings(
            max_examples=UNGUARDED_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(requests)
        def post_to_both(request: tuple[str, bytes]) -> None:
            path, content = request
            kwargs = {"content": content, "headers": {"content-type": "application/json"}}
            expected = seldon.client.post(path, **kwargs)
            found = ours.client.post(path, **kwargs)
            statuses[found.status_code] += 1
            if (found.status_code, _parsed(found)) != (expected.status_code, _parsed(expected)):
                differences.append(
                    f"{path} {content[:200]!r}: seldon {expected.status_code} "
                    f"{expected.text[:200]} / ours {found.status_code} {found.text[:200]}"
                )

        post_to_both()
        print("unguarded statuses:", dict(sorted(statuses.items())))
        assert not differences, "\n".join(differences[:10])
        assert "Traceback" not in ours.log()
