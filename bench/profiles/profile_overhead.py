"""Where a single-row Seldon REST request's time goes in ``modelshelf serve``'s app, in process.

Builds the REST app as a ``modelshelf serve`` worker does (the class from ``servers/``,
seldon-core's Flask app, ``WorkerMetrics``, ``SeldonRestApp``) on one model of the realistic set
and times, in interleaved rounds (median per call): the model call as served, hot (back to
back) and cold (after 16 MB of other memory were read, as between requests at one
connection); each stage of a request on its own; the whole request (``handle``; ``answer``
with batching, on an uvloop loop) and the model's time inside it; and the same request with
the model's answer stubbed (a constant): our own Python per request, hot and with the caches
evicted first (as a model that walks megabytes of trees leaves them). What it leaves out --
HTTP parsing, the sockets, the client -- is the identity model's cost at one connection
(``bench/identity``).

    .venv/bin/python bench/profiles/profile_overhead.py MODEL_FOLDER SERVER_CLASS BODY.json \
        [--method predict_proba] [--rounds 9] [--calls 200]

``PYTHONPATH=other/shared`` measures another checkout (before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.realistic import EVICTION_BYTES, SERVER_FOLDERS, cold_call_seconds  # noqa: E402

PATH = "/api/v1.0/predictions"


def build_app(folder: str, server_class: str, method: str | None) -> Any:
    """The REST app of one worker, its model loaded (as ``modelshelf serve --workers 1``)."""
    from seldon_core.wrapper import get_rest_microservice

    from modelshelf.serve import options
    from modelshelf.serve.metrics import WorkerMetrics
    from modelshelf.serve.rest import SeldonRestApp

    os.chdir(REPO / "servers" / SERVER_FOLDERS[server_class])
    parameters = [{"name": "model_uri", "value": folder, "type": "STRING"}]
    if method:
        parameters.append({"name": "method", "value": method, "type": "STRING"})
    user_model = options.import_user_class(server_class)(
        **options.user_parameters(json.dumps(parameters))
    )
    metrics = WorkerMetrics()
    flask_app = get_rest_microservice(user_model, metrics)
    user_model.load()
    app = SeldonRestApp(user_model, metrics, flask_app, None, "MODEL")
    gc.collect()
    gc.freeze()
    return app


def per_call(call: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("server_class", choices=sorted(SERVER_FOLDERS))
    parser.add_argument("body", type=Path)
    parser.add_argument("--method", default=None)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    sys.argv = [sys.argv[0], "--workers", "1"]  # the OpenMP policy reads the worker count

    import orjson
    import uvloop

    from modelshelf.serve import protocol
    from modelshelf.serve.ndarray import array_from_rows

    app = build_app(str(Path(args.folder).resolve()), args.server_class, args.method)
    body = args.body.read_bytes()
    request = orjson.loads(body)
    scope = {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("127.0.0.1", 9000),
        "client": ("127.0.0.1", 50000),
    }
    server, metrics = app.user_model, app.metrics
    X = array_from_rows(request["data"]["ndarray"])
    names = request["data"].get("names", [])
    model_input = server.model_input(X, names)
    method = server.method
    model_call = method.call
    if server.threads is not None:
        server.threads.for_rows(len(X))
    response = protocol.predict(server, request, metrics)
    other = np.ones(EVICTION_BYTES // 8)
    inside = [0.0]
    answer = model_call(model_input)

    def timed_call(rows: Any) -> Any:
        started = time.perf_counter()
        try:
            return model_call(rows)
        finally:
            inside[0] += time.perf_counter() - started

    def cold_call() -> None:
        other.sum()
        started = time.perf_counter()
        model_call(model_input)
        inside[0] += time.perf_counter() - started

    loop = uvloop.new_event_loop()

    async def answers(calls: int) -> None:
        for _ in range(calls):
            reply = app.answer(scope, body)
            if type(reply) is not tuple:
                await reply
            await asyncio.sleep(0)  # the passes between two requests at one connection
            await asyncio.sleep(0)

    async def passes(calls: int) -> None:
        for _ in range(calls):
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    def on_loop(coroutine: Callable[[int], Any]) -> float:
        started = time.perf_counter()
        loop.run_until_complete(coroutine(args.calls))
        return (time.perf_counter() - started) / args.calls * 1e6

    stages: dict[str, Callable[[], object]] = {
        "model call as served, hot": lambda: model_call(model_input),
        "decode (orjson)": lambda: app.decode(body),
        "body check": lambda: app.check_body(PATH, request),
        "ndarray -> array": lambda: array_from_rows(request["data"]["ndarray"]),
        "model_input (names, columns)": lambda: server.model_input(X, names),
        "serve (threads, call, counts)": lambda: server.serve(method, model_input),
        "server.predict": lambda: server.predict(X, names),
        "protocol.predict (seldon-core's steps)": lambda: protocol.predict(
            server, request, metrics
        ),
        "encode (orjson)": lambda: app.encode(protocol.predict, response, PATH),
        "whole request: handle": lambda: app.handle(scope, body),
    }
    found: dict[str, list[float]] = {name: [] for name in stages}
    extra = [
        "model call as served, cold",
        "model inside handle",
        "handle - model inside",
        "whole request: answer (batching, uvloop) - loop passes",
        "stubbed model: handle (our Python per request)",
        "stubbed model: handle, caches evicted first",
        "stubbed model: answer - loop passes",
    ]
    found.update({name: [] for name in extra})
    stubbed = type(method)(method.name, lambda rows: answer, method.output_names)
    for _ in range(args.rounds):
        for name, call in stages.items():
            found[name].append(per_call(call, args.calls))
        inside[0] = 0.0
        per_call(cold_call, args.calls)
        found["model call as served, cold"].append(inside[0] / args.calls * 1e6)
        object.__setattr__(method, "call", timed_call)
        inside[0] = 0.0
        whole = per_call(lambda: app.handle(scope, body), args.calls)
        object.__setattr__(method, "call", model_call)
        found["model inside handle"].append(inside[0] / args.calls * 1e6)
        found["handle - model inside"].append(whole - inside[0] / args.calls * 1e6)
        base = on_loop(passes)
        full = on_loop(answers)
        found["whole request: answer (batching, uvloop) - loop passes"].append(full - base)
        server.method = stubbed
        try:
            found["stubbed model: handle (our Python per request)"].append(
                per_call(lambda: app.handle(scope, body), args.calls)
            )
            found["stubbed model: handle, caches evicted first"].append(
                cold_call_seconds(lambda: app.handle(scope, body), args.calls) * 1e6
            )
            full = on_loop(answers)
            found["stubbed model: answer - loop passes"].append(full - base)
        finally:
            server.method = method
    print(f"{Path(args.folder).name}: µs per call, median of {args.rounds} interleaved rounds")
    print("| stage | median µs | min µs |")
    print("|---|---|---|")
    for name, values in found.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
