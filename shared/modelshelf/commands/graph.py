"""``modelshelf graph validate FILE…`` and ``modelshelf graph run MANIFEST``.

``validate`` checks SeldonDeployment / InferenceService / ServingRuntime manifests against the
CRD schemas (as the API server would) and SeldonDeployments against the operator's rules.
``run`` starts one server per node of a SeldonDeployment's predictor graph and serves the graph
on ``http://HOST:PORT/api/v1.0/predictions``; Ctrl-C or SIGTERM stops every process.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelshelf.errors import ModelshelfError

if TYPE_CHECKING:  # http.server is imported only by ``graph run`` (CLI start-up time)
    from http.server import ThreadingHTTPServer

DEFAULT_PORT = 8000  # Seldon's executor listens on 8000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("graph", help="validate or run SeldonDeployment graphs")
    commands = parser.add_subparsers(dest="graph_command", required=True, metavar="ACTION")

    check = commands.add_parser(
        "validate",
        help="check manifests against the CRD schemas; name the KServe runtime each "
        "InferenceService gets from the runtimes among the files",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.set_defaults(run=run_validate)

    run = commands.add_parser(
        "run", help="run a SeldonDeployment's predictor graph or an InferenceService locally"
    )
    run.add_argument("manifest", type=Path, metavar="MANIFEST")
    run.add_argument("--predictor", help="the predictor to run (default: the first)")
    run.add_argument("--host", default="127.0.0.1", help="front door address (127.0.0.1)")
    run.add_argument("--port", type=_port, default=DEFAULT_PORT, help="front door port (8000)")
    run.add_argument(
        "--secret",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a Secret manifest that envSecretRefName/envFrom name (repeatable)",
    )
    run.add_argument(
        "--model-uri",
        action="append",
        default=[],
        metavar="NODE=URI",
        help="serve NODE's model from URI instead of the manifest's (repeatable); for an "
        "InferenceService, URI or predictor=URI instead of storageUri",
    )
    run.add_argument("--servers-dir", type=Path, help="the project's servers/ folder")
    run.add_argument(
        "--runtimes",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="InferenceService: (Cluster)ServingRuntime manifests beside modelshelf's own "
        "(repeatable)",
    )
    run.add_argument(
        "--container-dir",
        action="append",
        default=[],
        metavar="ROLE=DIR",
        help="InferenceService: the folder a non-modelshelf container's command runs in, "
        "e.g. transformer=templates/kserve-model",
    )
    run.add_argument(
        "--ready-timeout",
        type=_positive_seconds,
        default=180,
        help="seconds for every node to load (180)",
    )
    run.set_defaults(run=run_graph)


def run_validate(args: argparse.Namespace) -> int:
    import yaml

    from modelshelf.graph import crd, kserve
    from modelshelf.graph.manifest import document_problems

    failed = 0
    loaded: list[tuple[Path, list]] = []
    for path in args.files:
        try:
            loaded.append((path, crd.load_file(path)))
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: cannot read: {exc}")
            failed += 1
    schema = [[document_problems(doc) for doc in documents] for _path, documents in loaded]
    # KServe's selection and runtime rules span files: only schema-valid documents take part
    report = kserve.check_documents(
        [
            [doc if not schema[f][d] else None for d, doc in enumerate(documents)]
            for f, (_path, documents) in enumerate(loaded)
        ]
    )
    for f, (path, documents) in enumerate(loaded):
        problems, notes = [], []
        for d in range(len(documents)):
            prefix = f"document {d + 1}: " if len(documents) > 1 else ""
            found = schema[f][d] + report.problems.get((f, d), [])
            problems.extend(prefix + p for p in found)
            notes.extend(prefix + n for n in report.notes.get((f, d), []))
        if problems:
            failed += 1
            print(f"{path}: INVALID")
            for problem in problems:
                print(f"  {problem}")
        else:
            kinds = ", ".join(str(d.get("kind")) for d in documents)
            print(f"{path}: valid ({kinds})")
        for note in notes:
            print(f"  {note}")
    return 1 if failed else 0


def run_graph(args: argparse.Namespace) -> int:
    import yaml

    from modelshelf.graph import crd
    from modelshelf.graph.frontdoor import (
        Endpoint,
        FrontDoor,
        GraphExecutor,
        NodeClient,
        make_handler,
    )
    from modelshelf.graph.manifest import read_predictor
    from modelshelf.graph.supervisor import GraphSupervisor, secrets_from_documents

    try:
        documents = crd.load_file(args.manifest)
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if any(isinstance(d, dict) and d.get("kind") == "InferenceService" for d in documents):
        return run_inference_service(args, documents)
    try:
        predictor = read_predictor(documents, str(args.manifest), args.predictor)
        secrets = secrets_from_documents(documents)
        for path in args.secret:
            secrets.update(secrets_from_documents(crd.load_file(path)))
        model_uris = _pairs(args.model_uri)
    except (ModelshelfError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        supervisor = GraphSupervisor(predictor, args.servers_dir, secrets, model_uris)
    except ModelshelfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def front_door() -> FrontDoor:
        endpoints = {
            launch.node.name: Endpoint("127.0.0.1", launch.http_port)
            for launch in supervisor.launches
        }
        client = NodeClient(endpoints)
        executor = GraphExecutor(predictor.graph, client)
        handler = make_handler(
            executor,
            ready=lambda: supervisor.exited() is None,
            metadata=lambda: _metadata(predictor, client),
            deployment=predictor.deployment,
            namespace=predictor.namespace,
        )
        return FrontDoor((args.host, args.port), handler)

    return _serve(
        supervisor,
        supervisor.fetch_models,
        front_door,
        lambda server: (
            f"graph {predictor.deployment}/{predictor.name} ready: "
            f"POST http://{args.host}:{server.server_port}/api/v1.0/predictions "
            f"(or /seldon/{predictor.namespace or 'NAMESPACE'}/{predictor.deployment}/api/v1.0/…)"
        ),
        lambda gone: (
            f"node {gone.node.name!r} stopped "
            f"(exit code {gone.process.returncode}); stopping the graph"
        ),
        args.ready_timeout,
    )


def run_inference_service(args: argparse.Namespace, documents: list[Any]) -> int:
    """``graph run`` of an InferenceService: its runtime, storage, transformer, front door."""
    import yaml

    from modelshelf.graph import crd, kserve
    from modelshelf.graph.frontdoor import FrontDoor
    from modelshelf.graph.kserve_frontdoor import DEFAULT_DOMAIN, make_kserve_handler
    from modelshelf.graph.kserve_run import InferenceServiceRun, kserve_secrets, our_runtimes
    from modelshelf.graph.manifest import document_problems
    from modelshelf.storage import redact

    try:
        services = [
            d for d in documents if isinstance(d, dict) and d.get("kind") == "InferenceService"
        ]
        if len(services) != 1:
            raise ValueError(f"expected one InferenceService, found {len(services)}")
        everything = list(documents)
        for path in args.runtimes + args.secret:
            everything.extend(crd.load_file(path))
        problems = [p for d in everything for p in document_problems(d)]
        if problems:
            raise ValueError("invalid manifest: " + "; ".join(problems))
        runtimes = [
            kserve.Runtime.from_document(d)
            for d in everything
            if d.get("kind") in kserve.RUNTIME_KINDS
        ]
        runtimes += [r for r in our_runtimes() if r.name not in {x.name for x in runtimes}]
        secrets = kserve_secrets(everything)
        if len(args.model_uri) > 1:
            given = ", ".join(redact(text.removeprefix("predictor=")) for text in args.model_uri)
            raise ValueError(
                f"--model-uri given {len(args.model_uri)} times ({given}): an InferenceService "
                "serves one model, give it once (URI or predictor=URI)"
            )
        # URI or predictor=URI (a signed URL may hold "=")
        model_uri = args.model_uri[0].removeprefix("predictor=") if args.model_uri else None
        role, sep, _ = (model_uri or "").partition("=")
        if sep and role and not set(role) & set("/:.~"):  # ROLE=..., not a path or a URI
            raise ValueError(
                f"--model-uri {role}=…: an InferenceService's model is its predictor's; give "
                "URI or predictor=URI (a transformer's folder is --container-dir ROLE=DIR)"
            )
        dirs = _pairs(args.container_dir, "--container-dir", "ROLE=DIR")
        run = InferenceServiceRun(
            services[0],
            runtimes,
            secrets,
            model_uri,
            {role: Path(d).resolve() for role, d in dirs.items()},
            args.servers_dir,
        )
    except (ModelshelfError, OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{run.name}: runtime {run.runtime.label} ({run.selection.reason})", flush=True)

    def front_door() -> FrontDoor:
        hosts = {c.role: c.host for c in run.components}
        handler = make_kserve_handler(run.name, run.namespace, hosts, run.ready)
        return FrontDoor((args.host, args.port), handler)

    def ready_message(server: FrontDoor) -> str:
        base = f"http://{args.host}:{server.server_port}"
        predictor = next(c for c in run.components if c.role == "predictor")
        return (
            f"inferenceservice {run.namespace}/{run.name} ready: "
            f"POST {base}/v1/models/{run.name}:predict, {base}/v2/models/{run.name}/infer "
            f"(Host: {run.name}.{run.namespace}.{DEFAULT_DOMAIN} or /serving/{run.namespace}/"
            f"{run.name}/...); V2 gRPC on 127.0.0.1:{predictor.grpc_port}"
        )

    return _serve(
        run,
        run.prepare,
        front_door,
        ready_message,
        lambda gone: (
            f"{gone.role} stopped (exit code {gone.process.returncode}); "
            "stopping the InferenceService"
        ),
        args.ready_timeout,
    )


def _serve(
    run: Any,
    prepare: Callable[[], None],
    front_door: Callable[[], ThreadingHTTPServer],
    ready_message: Callable[[Any], str],
    exit_message: Callable[[Any], str],
    ready_timeout: float,
) -> int:
    """What ``graph run`` does with a planned run (a graph's nodes or an InferenceService's
    components): fetch, start, wait until ready, serve ``front_door`` until Ctrl-C / SIGTERM or
    until a process stops, then stop everything. The exit code: 0 stopped, 1 failed, 130
    interrupted before ready."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    server: ThreadingHTTPServer | None = None
    try:
        prepare()
        if stop.is_set():
            return 130
        run.start()
        _wait(run, ready_timeout, stop)
        if stop.is_set():
            return 130
        server = front_door()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(ready_message(server), flush=True)
        while not stop.wait(0.5):
            gone = run.exited()
            if gone is not None:
                print(f"error: {exit_message(gone)}", file=sys.stderr)
                return 1
        return 0
    except ModelshelfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        run.stop()
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)


def _wait(supervisor: Any, timeout: float, stop: threading.Event) -> None:
    """``wait_ready`` that still lets Ctrl-C through while models load."""
    done = threading.Event()
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            supervisor.wait_ready(timeout)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=wait, daemon=True).start()
    while not done.wait(0.2):
        if stop.is_set():
            return
    if failure:
        raise failure[0]


def _metadata(predictor: Any, client: Any) -> dict[str, Any]:
    models = {}
    for node in predictor.nodes():
        status, body = client.get(node.name, "/api/v1.0/metadata")
        models[node.name] = body if status == 200 else {"error": body}
    return {"name": predictor.name, "models": models}


def _port(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: a whole number 1-65535")
    return port


def _positive_seconds(text: str) -> float:
    """argparse type: a number of seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: a number of seconds above 0")
    return seconds


def _pairs(texts: list[str], flag: str = "--model-uri", form: str = "NODE=URI") -> dict[str, str]:
    """Repeatable ``NAME=VALUE`` flags as a mapping; a name given twice is an error (the last
    would silently win), naming both values (URIs without their secrets)."""
    from modelshelf.storage import redact

    found: dict[str, str] = {}
    for text in texts:
        name, value = _pair(text, flag, form)
        if name in found:
            raise ValueError(
                f"{flag} names {name!r} twice ({redact(found[name])}, then {redact(value)}): "
                f"give each {form.split('=')[0]} once"
            )
        found[name] = value
    return found


def _pair(text: str, flag: str = "--model-uri", form: str = "NODE=URI") -> tuple[str, str]:
    name, sep, uri = text.partition("=")
    if not sep or not name or not uri:
        raise ValueError(f"{flag} {text!r}: expected {form}")
    return name, uri
