"""The front door's graph walk with ROUTER and COMBINER nodes, against real seldon-core
microservices (a small test component; modelshelf ships no router or combiner server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microservice import entered_in_parallel, running_microservice, seldon_parameters
from modelshelf.graph.frontdoor import (
    Endpoint,
    FeedbackError,
    GraphExecutor,
    NodeClient,
    NodeError,
)
from modelshelf.graph.manifest import GraphNode
from prometheus import sample, scrape

COMPONENTS = Path(__file__).resolve().parent / "components"
UNITS = {
    "router": ("ROUTER", 1.0),
    "double": ("MODEL", 2.0),
    "triple": ("MODEL", 3.0),
    "mean": ("COMBINER", 1.0),
}


@pytest.fixture(scope="module")
def services():
    """One real microservice per unit, started in parallel."""
    contexts = {
        name: running_microservice(
            "GraphUnit",
            seldon_parameters(factor=factor),
            service_type=service_type,
            cwd=COMPONENTS,
            env={
                "PREDICTIVE_UNIT_ID": name,
                "PREDICTIVE_UNIT_IMAGE": f"test/{name}:1",
                "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",  # as the operator sets it
            },
        )
        for name, (service_type, factor) in UNITS.items()
    }
    with entered_in_parallel(contexts) as running:
        yield running


@pytest.fixture(scope="module")
def client(services):
    return NodeClient({n: Endpoint("127.0.0.1", s.http_port) for n, s in services.items()})


def node(name: str, node_type: str, *children: GraphNode) -> GraphNode:
    return GraphNode(
        name=name,
        path=f"graph.{name}",
        type=node_type,
        methods=[],
        implementation="UNKNOWN_IMPLEMENTATION",
        model_uri=None,
        parameters=[],
        env_secret_ref_name=None,
        container={"name": name, "image": f"test/{name}:1"},
        children=list(children),
    )


def values(body: dict) -> np.ndarray:
    data = body["data"]
    if "ndarray" in data:
        return np.array(data["ndarray"])
    return np.array(data["tensor"]["values"]).reshape(data["tensor"]["shape"])


@pytest.mark.parametrize(("first", "child", "factor"), [(0, "double", 2.0), (1, "triple", 3.0)])
def test_router_sends_the_request_to_the_child_it_chooses(client, first, child, factor):
    graph = node("router", "ROUTER", node("double", "MODEL"), node("triple", "MODEL"))
    X = [[first, 5.0]]
    body = GraphExecutor(graph, client).predict({"data": {"ndarray": X}})
    np.testing.assert_array_equal(values(body), np.array(X) * factor)
    assert body["meta"]["routing"] == {"router": first}
    assert body["meta"]["requestPath"] == {"router": "test/router:1", child: f"test/{child}:1"}


def test_router_choosing_a_child_that_does_not_exist_is_an_error(client):
    graph = node("router", "ROUTER", node("double", "MODEL"), node("triple", "MODEL"))
    with pytest.raises(NodeError) as raised:
        GraphExecutor(graph, client).predict({"data": {"ndarray": [[7, 1]]}})
    assert raised.value.node == "router"
    assert "chose child 7, but it has 2" in raised.value.body["status"]["info"]


def test_combiner_aggregates_every_child(client):
    graph = node("mean", "COMBINER", node("double", "MODEL"), node("triple", "MODEL"))
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    body = GraphExecutor(graph, client).predict({"data": {"ndarray": X.tolist()}})
    np.testing.assert_array_equal(values(body), (X * 2 + X * 3) / 2)
    assert set(body["meta"]["requestPath"]) == {"mean", "double", "triple"}


def test_model_with_a_child_feeds_it_its_answer(client):
    graph = node("double", "MODEL", node("triple", "MODEL"))
    body = GraphExecutor(graph, client).predict({"data": {"ndarray": [[1.0, 2.0]]}})
    np.testing.assert_array_equal(values(body), [[6.0, 12.0]])


def test_a_children_error_stops_the_walk_with_the_nodes_status(client):
    graph = node("mean", "COMBINER", node("double", "MODEL"), node("triple", "MODEL"))
    with pytest.raises(NodeError) as raised:
        GraphExecutor(graph, client).predict({"data": {"ndarray": [["a", "b"]]}})
    assert raised.value.node == "double"
    assert raised.value.status >= 400


# ---------------------------------------------------------------- feedback


def feedback_counts(services) -> dict[str, float]:
    """How many feedback requests each unit has answered (its Seldon metrics)."""
    return {
        name: sample(scrape(service), "seldon_api_model_feedback_total") or 0.0
        for name, service in services.items()
    }


def feedback(routing: dict[str, int] | None = None) -> dict:
    response: dict = {"data": {"ndarray": [[2.0, 4.0]]}}
    if routing is not None:
        response["meta"] = {"routing": routing}
    return {"request": {"data": {"ndarray": [[1.0, 2.0]]}}, "response": response, "reward": 1.0}


@pytest.mark.parametrize(
    ("graph", "routing", "reached"),
    [
        # A combiner takes no feedback itself; every child had the request, so every child gets it.
        (
            node("mean", "COMBINER", node("double", "MODEL"), node("triple", "MODEL")),
            None,
            {"double", "triple"},
        ),
        # A router gets it, and so does the child it chose -- only that one.
        (
            node("router", "ROUTER", node("double", "MODEL"), node("triple", "MODEL")),
            {"router": 1},
            {"router", "triple"},
        ),
        # No routing for the router (the executor's -1): every child.
        (
            node("router", "ROUTER", node("double", "MODEL"), node("triple", "MODEL")),
            {},
            {"router", "double", "triple"},
        ),
        # A model's child had the model's answer: both get feedback.
        (node("double", "MODEL", node("triple", "MODEL")), None, {"double", "triple"}),
    ],
    ids=["combiner", "router-chose-1", "router-not-routed", "model-chain"],
)
def test_feedback_goes_where_the_request_went(services, client, graph, routing, reached):
    before = feedback_counts(services)
    answer = GraphExecutor(graph, client).feedback(feedback(routing))
    after = feedback_counts(services)
    assert {name for name in after if after[name] != before[name]} == reached
    assert all(after[name] == before[name] + 1 for name in reached)
    assert "data" in answer  # a node's SeldonMessage, not the Feedback echoed


def test_feedback_routing_that_is_not_an_object_is_refused(client):
    graph = node("router", "ROUTER", node("double", "MODEL"), node("triple", "MODEL"))
    message = feedback()
    message["response"]["meta"] = {"routing": [1]}
    with pytest.raises(FeedbackError) as raised:
        GraphExecutor(graph, client).feedback(message)
    assert raised.value.field == "response.meta.routing"
