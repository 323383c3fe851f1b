"""Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService``.

Only the wire format lives here; every answer comes from ``modelshelf.serve.inference`` (the
same decode → call → encode as V2 REST), so both protocols answer alike. Inputs are read from
``raw_input_contents`` (one entry per input: little-endian, row-major, ``BYTES`` as 4-byte
length + bytes) or from each input's typed ``contents``; outputs are always written to
``raw_output_contents``, which is all tritonclient's gRPC client reads (``FP16`` has no typed
field at all). ``ModelInfer`` reads raw requests and packed typed ``contents`` and writes every
answer with ``v2_grpc.wire`` (protobuf 3.20's pure-Python messages cost more than the model);
what ``wire`` leaves (unpacked typed numbers, malformed messages) goes through the generated
classes. Errors are status codes: INVALID_ARGUMENT (the request), NOT_FOUND (another model or
version), UNAVAILABLE (not ready), INTERNAL (the model failed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from modelshelf.errors import BadRequestError
from modelshelf.serve import inference
from modelshelf.serve.batching import Batcher, v2_pending
from modelshelf.serve.grpc_worker import status_code_of
from modelshelf.serve.inference import (
    InferenceCore,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)
from modelshelf.serve.v2_grpc import open_inference_grpc_pb2 as pb
from modelshelf.serve.v2_grpc import open_inference_grpc_pb2_grpc as pb_grpc
from modelshelf.serve.v2_grpc import wire

logger = logging.getLogger(__name__)

#: The typed ``InferTensorContents`` field of each datatype (``FP16`` has none: raw only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
SERVICE_NAME = "inference.GRPCInferenceService"
#: A unary call's outcome: (answer bytes or None, status code, details).
CallResult = tuple[bytes | None, int, str | None]


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The V2 gRPC service of one loaded model (``core``); method names are the protocol's."""

    def __init__(
        self,
        core: InferenceCore,
        extensions: tuple[str, ...] = (),
        batcher: Batcher | None = None,
    ) -> None:
        self.core = core
        self.extensions = extensions
        #: Adaptive batching of ``ModelInfer`` (modelshelf's HTTP/2 server, one call at a time).
        self.batcher = batcher

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.core.ready())

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            self._check_model(request.name, request.version)
        except Exception as exc:
            _abort(context, exc)
        return pb.ModelReadyResponse(ready=self.core.ready())

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        found = self.core.server_metadata(self.extensions)
        return pb.ServerMetadataResponse(
            name=found["name"], version=found["version"], extensions=found["extensions"]
        )

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            self._check_model(request.name, request.version)
            found = self.core.model_metadata()
        except Exception as exc:
            _abort(context, exc)
        return pb.ModelMetadataResponse(
            name=found["name"],
            versions=found.get("versions") or [],
            platform=found.get("platform") or "",
            inputs=[_tensor_metadata(spec) for spec in found.get("inputs") or []],
            outputs=[_tensor_metadata(spec) for spec in found.get("outputs") or []],
        )

    def ModelInfer(  # noqa: N802
        self, data: bytes, context: grpc.ServicerContext
    ) -> bytes | asyncio.Future:
        """Bytes in, bytes out: a request ``wire`` reads (raw or packed typed contents) is read
        there, any other by the generated classes; the answer is always written by ``wire``.

        With a batcher that is not idle (a model call just ran or requests are queued), the
        answer is the future of the call's (answer, status code, details): modelshelf's HTTP/2
        server answers the stream once it resolves (``batching`` joins the request with the
        others read in the same loop pass)."""
        batcher = self.batcher
        try:
            raw = wire.read_request(data)
            if raw is None:
                message = _parse_request(data)
                self.core.check(message.model_name, message.model_version or None)
                request = read_request(message)
            else:
                self.core.check(raw.model_name, raw.model_version or None)
                request = build_request(
                    raw.inputs, raw.raw_input_contents, raw.outputs, raw.id, raw.parameters
                )
            if batcher is None:
                return wire.write_response(self.core.infer(request))
            return batcher.answer(
                lambda: wire.write_response(self.core.infer(request)),
                lambda: self._queued(request, batcher),
            )
        except Exception as exc:
            _abort(context, exc)
        raise AssertionError("unreachable: abort raises")

    def _queued(self, request: InferenceRequest, batcher: Batcher) -> bytes | asyncio.Future:
        """The future of ``request``'s answer, queued to join the next model call when it
        qualifies (as V2 REST requests do); else its answer now."""
        core = self.core
        plan = core.plan(request)
        pending = v2_pending(core, request, plan, _answered, _failed)
        if pending is None:
            return wire.write_response(core.run_plan(request, plan))
        return batcher.enqueue(pending)

    def _check_model(self, name: str, version: str) -> None:
        """NOT_FOUND for another model or version; a model not ready yet is still this one."""
        self.core.check(name, version or None, ready=False)  # ModelReady says; metadata known


def add_inference_service(server: Any, core: InferenceCore, batcher: Batcher | None = None) -> None:
    """Register the V2 service on ``server`` (beside seldon-core's, before it starts).

    ModelInfer takes and answers bytes (``wire``); the other methods use the generated classes.
    ``batcher``: adaptive batching of ModelInfer, only for a server that answers a future
    (modelshelf's HTTP/2 server, one call at a time).
    """
    servicer = InferenceServicer(core, batcher=batcher)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, request, response in (
            ("ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse),
            ("ServerReady", pb.ServerReadyRequest, pb.ServerReadyResponse),
            ("ModelReady", pb.ModelReadyRequest, pb.ModelReadyResponse),
            ("ServerMetadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            ("ModelMetadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse),
        )
    }
    handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(servicer.ModelInfer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))


def read_request(request: Any) -> InferenceRequest:
    """A generated ``ModelInferRequest`` (typed or raw contents) as the core's request."""
    headers = [
        wire.InputHeader(t.name, t.datatype, list(t.shape), _parameters(t.parameters), _contents(t))
        for t in request.inputs
    ]
    return build_request(
        headers,
        list(request.raw_input_contents),
        [(o.name, _parameters(o.parameters)) for o in request.outputs],
        request.id,
        _parameters(request.parameters),
    )


def _contents(tensor: Any) -> dict[str, Any] | None:
    """An input's typed contents as ``wire.InputHeader.contents`` holds them (fields by name);
    ``None`` when it has none (an empty message included)."""
    if not tensor.HasField("contents") or not tensor.contents.ByteSize():
        return None
    return {found.name: values for found, values in tensor.contents.ListFields()}


def build_request(
    headers: list[wire.InputHeader],
    raw: list[bytes] | list[memoryview],
    outputs: list[tuple[str, dict[str, Any]]],
    request_id: str,
    parameters: dict[str, Any],
) -> InferenceRequest:
    """The core's request from a ``ModelInferRequest``'s parts, however they were read."""
    if raw and len(raw) != len(headers):
        raise BadRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(headers)} inputs; "
            "when raw contents are used, every input needs one, in the order of inputs"
        )
    inputs = []
    for index, header in enumerate(headers):
        name, datatype = header.name, header.datatype
        typed = header.contents
        if raw:
            if typed is not None:
                raise BadRequestError(
                    f"input {name!r} has both contents and raw_input_contents; send one"
                )
            inputs.append(
                Tensor.from_bytes(name, datatype, header.shape, raw[index], header.parameters)
            )
            continue
        field = CONTENTS_FIELDS.get(datatype)
        if field is None and datatype == "FP16":
            raise BadRequestError(
                f"input {name!r}: FP16 has no typed contents field; send raw_input_contents "
                "(2-byte little-endian IEEE half floats)"
            )
        values = list(typed.get(field, ())) if field and typed is not None else []
        if not values and field and typed is not None:
            sent = list(typed)
            if sent:
                raise BadRequestError(
                    f"input {name!r} is {datatype}, whose typed values go in {field}; the "
                    f"request has them in {', '.join(sent)}: send {field}, or the datatype "
                    "of the values sent"
                )
        inputs.append(  # typed contents: numbers in numeric fields, booleans only in BOOL's
            Tensor.from_values(
                name, datatype, header.shape, values, header.parameters, json_booleans=False
            )
        )
    return InferenceRequest(
        inputs=inputs,
        outputs=[RequestedOutput(name, params) for name, params in outputs] or None,
        id=request_id or None,
        parameters=parameters,
    )


def _parse_request(data: bytes) -> Any:
    try:
        return pb.ModelInferRequest.FromString(data)
    except (DecodeError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the request is not a ModelInferRequest: {exc}") from None


def _parameters(entries: Any) -> dict[str, Any]:
    """A map of ``InferParameter`` as plain values (an unset parameter is left out)."""
    found = {}
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            found[key] = getattr(value, choice)
    return found


def _tensor_metadata(spec: dict[str, Any]) -> Any:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec["name"], datatype=spec["datatype"], shape=spec["shape"]
    )


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    """End the call with the status code of ``exc`` and its message (never a traceback)."""
    code, details = _status(exc)
    context.abort(code, details)


def _status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    code = status_code_of(inference.status_of(exc))
    if code is grpc.StatusCode.INTERNAL:
        logger.error("V2 gRPC request failed", exc_info=exc)
    return code, inference.message_of(exc)


def _answered(response: InferenceResponse) -> CallResult:
    """A queued call's answer, as ``http2.calls.call_unary`` gives one."""
    return wire.write_response(response), 0, None


def _failed(exc: Exception) -> CallResult:
    """A queued call's error: the status ``_abort`` ends an inline call with."""
    code, details = _status(exc)
    return None, code.value[0], details
