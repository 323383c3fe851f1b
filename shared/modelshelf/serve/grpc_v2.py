"""Open Inference Protocol (V2) over gRPC: ``inference.GRPCInferenceService``.

Only the wire format lives here; every answer comes from ``modelshelf.serve.inference`` (the
same decode → call → encode as V2 REST), so both protocols answer alike. Inputs are read from
``raw_input_contents`` (one entry per input: little-endian, row-major, ``BYTES`` as 4-byte
length + bytes) or from each input's typed ``contents``; outputs are always written to
``raw_output_contents``, which is all tritonclient's gRPC client reads (``FP16`` has no typed
field at all). Errors are status codes: INVALID_ARGUMENT (the request), NOT_FOUND (another
model or version), UNAVAILABLE (not ready), INTERNAL (the model failed).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import grpc

from modelshelf.errors import BadRequestError, ModelNotReadyError
from modelshelf.serve import inference
from modelshelf.serve.inference import (
    InferenceCore,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)
from modelshelf.serve.v2_grpc import open_inference_grpc_pb2 as pb
from modelshelf.serve.v2_grpc import open_inference_grpc_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

#: HTTP status of an error (``inference.status_of``) → gRPC status code.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    503: grpc.StatusCode.UNAVAILABLE,
}
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
_INT64_MAX = 2**63 - 1


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The V2 gRPC service of one loaded model (``core``); method names are the protocol's."""

    def __init__(self, core: InferenceCore, extensions: tuple[str, ...] = ()) -> None:
        self.core = core
        self.extensions = extensions

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

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        try:
            self.core.check(request.model_name, request.model_version or None)
            answer = self.core.infer(read_request(request))
            return write_response(answer)
        except Exception as exc:
            _abort(context, exc)

    def _check_model(self, name: str, version: str) -> None:
        """NOT_FOUND for another model or version; a model not ready yet is still this one."""
        with contextlib.suppress(ModelNotReadyError):  # ModelReady says so; metadata is known
            self.core.check(name, version or None)


def add_inference_service(server: grpc.Server, core: InferenceCore) -> None:
    """Register the V2 service on ``server`` (beside seldon-core's, before it starts)."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), server)


def read_request(request: Any) -> InferenceRequest:
    """A ``ModelInferRequest`` as the core's request: raw or typed contents, parameters."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequestError(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
            "when raw contents are used, every input needs one, in the order of inputs"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        name, datatype = tensor.name, tensor.datatype
        parameters = _parameters(tensor.parameters)
        shape = list(tensor.shape)
        if raw:
            if tensor.HasField("contents") and tensor.contents.ByteSize():
                raise BadRequestError(
                    f"input {name!r} has both contents and raw_input_contents; send one"
                )
            inputs.append(Tensor.from_bytes(name, datatype, shape, raw[index], parameters))
            continue
        field = CONTENTS_FIELDS.get(datatype)
        if field is None and datatype == "FP16":
            raise BadRequestError(
                f"input {name!r}: FP16 has no typed contents field; send raw_input_contents "
                "(2-byte little-endian IEEE half floats)"
            )
        values = list(getattr(tensor.contents, field)) if field else []
        inputs.append(Tensor.from_values(name, datatype, shape, values, parameters))
    outputs = [
        RequestedOutput(output.name, _parameters(output.parameters)) for output in request.outputs
    ]
    return InferenceRequest(
        inputs=inputs,
        outputs=outputs or None,
        id=request.id or None,
        parameters=_parameters(request.parameters),
    )


def write_response(answer: InferenceResponse) -> Any:
    """The core's answer as a ``ModelInferResponse``, every output in ``raw_output_contents``."""
    response = pb.ModelInferResponse(
        model_name=answer.model_name,
        model_version=answer.model_version or "",
        id=answer.id or "",
    )
    _set_parameters(response.parameters, answer.parameters)
    for tensor in answer.outputs:
        output = response.outputs.add(name=tensor.name, datatype=tensor.datatype)
        output.shape.extend(tensor.shape)
        _set_parameters(output.parameters, tensor.parameters)
        response.raw_output_contents.append(tensor.to_bytes())
    return response


def _parameters(entries: Any) -> dict[str, Any]:
    """A map of ``InferParameter`` as plain values (an unset parameter is left out)."""
    found = {}
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            found[key] = getattr(value, choice)
    return found


def _set_parameters(target: Any, parameters: dict[str, Any]) -> None:
    for key, value in parameters.items():
        value = inference.parameter_value(value)  # lists and mappings as JSON text
        entry = target[key]
        if isinstance(value, bool):
            entry.bool_param = value
        elif isinstance(value, int):
            if value > _INT64_MAX:
                entry.uint64_param = value
            else:
                entry.int64_param = value
        elif isinstance(value, float):
            entry.double_param = value
        else:
            entry.string_param = value


def _tensor_metadata(spec: dict[str, Any]) -> Any:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec["name"], datatype=spec["datatype"], shape=spec["shape"]
    )


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    """End the call with the status code of ``exc`` and its message (never a traceback)."""
    code = STATUS_CODES.get(inference.status_of(exc), grpc.StatusCode.INTERNAL)
    if code is grpc.StatusCode.INTERNAL:
        logger.exception("V2 gRPC request failed")
    context.abort(code, inference.message_of(exc))
