"""Open Inference Protocol (V2) over REST, with the binary tensor data extension.

Paths: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/NAME[/versions/V]``,
``…/ready``; ``POST …/infer``. Errors are ``{"error": "…"}`` with 400 (the request), 404 (another
model or version, an unknown path), 405, 503 (not ready) or 500.

Binary tensor data (as Triton and KServe): the JSON part is the first
``Inference-Header-Content-Length`` bytes of the body, and each input with a
``binary_data_size`` parameter takes its bytes, in order, from the rest (little-endian,
row-major, ``BOOL`` one byte, ``BYTES`` as 4-byte length + bytes). An output is answered in
binary when its request asks ``"binary_data": true``, or, without that, when the request's
``binary_data_output`` is true; the response then has the same layout and header. A body
may come without a Content-Type (tritonclient sends none), as JSON, octets or curl's form
default; one declared as another format (``text/csv``) is a 415. Fields the protocol does not
define (the kserve client's ``model_name``) are ignored.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from modelshelf.errors import BadRequestError
from modelshelf.inputs import quoted
from modelshelf.json_values import UnreadableValue, refused_json_message
from modelshelf.serve.inference import (
    InferenceCore,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
    element_at,
    error_answer,
    status_of,
)
from modelshelf.serve.protocols import Reply, header, json_reply

BINARY_EXTENSION = "binary_tensor_data"
EXTENSIONS = (BINARY_EXTENSION,)
HEADER_LENGTH = b"inference-header-content-length"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY

logger = logging.getLogger(__name__)


class V2Rest:
    """The V2 REST adapter of one model."""

    def __init__(self, core: InferenceCore) -> None:
        self.core = core

    def handle(self, scope: dict, path: str, body: bytes) -> Reply:
        method = scope["method"]
        parts = path.rstrip("/").split("/")[1:]  # "v2", …
        try:
            if len(parts) >= 3 and parts[1] == "models":
                return self._model_path(scope, method, parts[2:], body)
            if method != "GET":
                return _error(405, f"{method} {path} is not allowed; use GET")
            if len(parts) == 1:
                return json_reply(200, self.core.server_metadata(EXTENSIONS))
            if parts[1:] == ["health", "live"]:
                return json_reply(200, {"live": True})
            if parts[1:] == ["health", "ready"]:
                ready = self.core.ready()
                return json_reply(200 if ready else 503, {"ready": ready})
            return _error(404, f"no V2 endpoint at {path}")
        except Exception as exc:
            return self.error(exc, f"{method} {path}")

    def _model_path(self, scope: dict, method: str, rest: list[str], body: bytes) -> Reply:
        name, version, action = rest[0], None, rest[1:]
        if action[:1] == ["versions"]:
            if len(action) < 2:
                return _error(404, "a version is missing after /versions/")
            version, action = action[1], action[2:]
        core = self.core
        if action == ["infer"]:
            if method != "POST":
                return _error(405, f"{method} …/infer is not allowed; use POST")
            core.check(name, version)
            return self.infer(scope, body)
        if method != "GET":
            return _error(405, f"{method} is not allowed here; use GET")
        if action == ["ready"]:
            try:
                core.check(name, version)
            except Exception as exc:
                if status_of(exc) != 503:
                    raise
                return json_reply(503, {"name": name, "ready": False})
            ready = core.ready()  # and every port accepts (gRPC's too)
            return json_reply(200 if ready else 503, {"name": name, "ready": ready})
        if not action:  # metadata answers while the model is not ready, as over gRPC
            core.check(name, version, ready=False)
            return json_reply(200, core.model_metadata())
        return _error(404, f"no V2 endpoint /{'/'.join(action)} for model {name!r}")

    def infer(self, scope: dict, body: bytes) -> Reply:
        request, binary_default = self.parse(scope, body)
        return self.reply(self.core.infer(request), request, binary_default)

    def parse(self, scope: dict, body: bytes) -> tuple[InferenceRequest, bool]:
        """An ``…/infer`` body as the request and its ``binary_data_output`` flag."""
        content_type = header(scope, b"content-type")
        if content_type is not None and not content_type.startswith(b"application/json"):
            _check_content_type(content_type)
        body = _decoded(scope, body)
        length = header(scope, HEADER_LENGTH)
        if length is None:
            document, binary = body, b""
        else:
            size = _header_length(length, len(body))
            document, binary = body[:size], memoryview(body)[size:]
        try:
            fields = orjson.loads(document)
        except orjson.JSONDecodeError as exc:
            message = refused_json_message(
                document, exc, "the request body is not JSON", "the request", _element_refused
            )
            raise BadRequestError(message) from None
        return _request(fields, binary, lambda: b"true" in document or b"false" in document)

    @staticmethod
    def reply(response: InferenceResponse, request: InferenceRequest, binary: bool) -> Reply:
        """The HTTP answer: JSON, or JSON and binary outputs."""
        return _response(response, request, binary)

    @staticmethod
    def error(exc: BaseException, what: str) -> Reply:
        """The answer to an exception raised serving ``what`` (500s logged with the traceback)."""
        return _error(*error_answer(exc, f"V2 {what}", logger))


#: Content-Types an ``…/infer`` body may declare besides JSON: the binary extension's
#: octets, and curl's default for ``-d``. None at all (tritonclient's binary requests) is fine.
_OTHER_BODY_TYPES = (b"application/octet-stream", b"application/x-www-form-urlencoded")


def _check_content_type(value: bytes) -> None:
    """415 for a body declared as something other than JSON (``text/csv``…): it would be
    read as JSON all the same (MLServer's FastAPI endpoint refuses it too, with a 422)."""
    media = value.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or media in _OTHER_BODY_TYPES:
        return
    if media.startswith(b"application/") and media.endswith(b"+json"):
        return
    from modelshelf.request_errors import RequestRefusedError

    raise RequestRefusedError(
        f"Content-Type {value.decode('latin-1')!r} is not a V2 request body: send the JSON "
        "request as application/json (binary tensor data: application/octet-stream, or no "
        "Content-Type, with Inference-Header-Content-Length)",
        415,
        "MICROSERVICE_UNSUPPORTED_MEDIA_TYPE",
    )


def _decoded(scope: dict, body: bytes) -> bytes:
    encoding = header(scope, b"content-encoding")
    if encoding is None or encoding == b"identity":
        return body
    try:
        if encoding == b"gzip":
            return gzip.decompress(body)
        if encoding == b"deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as exc:
        raise BadRequestError(f"the body is not valid {encoding.decode()}: {exc}") from None
    raise BadRequestError(
        f"Content-Encoding {encoding.decode('latin-1')!r} is not supported: gzip or deflate"
    )


def _header_length(value: bytes, body_size: int) -> int:
    try:
        size = int(value)
    except ValueError:
        size = -1
    if not 0 <= size <= body_size:
        raise BadRequestError(
            f"Inference-Header-Content-Length {value.decode('latin-1')!r} must be a whole number "
            f"of bytes from 0 to the body's {body_size}"
        )
    return size


def _parameters(fields: dict[str, Any], owner: str) -> dict[str, Any]:
    """The ``parameters`` object of the request, an input or an output (absent: empty); any
    other JSON value is refused here, before the codecs read it as a mapping."""
    parameters = fields.get("parameters") or {}
    if type(parameters) is not dict:
        raise BadRequestError(
            f'{owner}: parameters must be an object (e.g. {{"content_type": "np"}}), '
            f"got {quoted(parameters)}"
        )
    return parameters


def _request(
    fields: Any, binary: Any, json_booleans: Callable[[], bool]
) -> tuple[InferenceRequest, bool]:
    """The inference request and its ``binary_data_output`` flag; ``json_booleans`` says
    whether the JSON may hold booleans at all (asked only where numbers read 1 or 0)."""
    if type(fields) is not dict:
        raise BadRequestError("the request must be a JSON object with inputs")
    inputs = fields.get("inputs")
    if type(inputs) is not list or not inputs:
        raise BadRequestError("inputs must be a non-empty list of tensors")
    tensors = []
    at = 0
    for index, spec in enumerate(inputs):
        if type(spec) is not dict:
            raise BadRequestError(f"inputs[{index}] must be an object: name, datatype, shape, data")
        name = spec.get("name")
        datatype = spec.get("datatype")
        shape = spec.get("shape")
        if type(name) is not str or type(datatype) is not str:
            raise BadRequestError(f"inputs[{index}] needs a name and a datatype (strings)")
        parameters = _parameters(spec, f"input {name!r}")
        size = parameters.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise BadRequestError(
                    f"input {name!r}: binary_data_size must be a non-negative integer, "
                    f"got {quoted(size)}"
                )
            if at + size > len(binary):
                raise BadRequestError(
                    f"input {name!r}: binary_data_size {size} is more than the "
                    f"{len(binary) - at} bytes left after the JSON"
                )
            tensor = Tensor.from_bytes(name, datatype, shape, binary[at : at + size], parameters)
            at += size
        elif "data" in spec:
            tensor = Tensor.from_values(
                name, datatype, shape, spec["data"], parameters, json_booleans
            )
        else:
            raise BadRequestError(f"input {name!r} has neither data nor binary_data_size")
        tensors.append(tensor)
    if at != len(binary):
        raise BadRequestError(
            f"{len(binary) - at} bytes after the JSON belong to no input's binary_data_size"
        )
    outputs = None
    wanted = fields.get("outputs")
    if wanted is not None:
        if type(wanted) is not list or not all(
            type(o) is dict and type(o.get("name")) is str for o in wanted
        ):
            raise BadRequestError("outputs must be a list of objects with a name")
        outputs = [
            RequestedOutput(o["name"], _parameters(o, f"output {o['name']!r}")) for o in wanted
        ]
        for output in outputs:
            _check_flag(output.parameters.get("binary_data"), "binary_data", output.name)
    parameters = _parameters(fields, "the request")
    binary_output = parameters.pop("binary_data_output", None)
    _check_flag(binary_output, "binary_data_output", None)
    binary_default = bool(binary_output)
    identifier = fields.get("id")
    if identifier is not None and type(identifier) is not str:
        raise BadRequestError(
            f"id must be a string (the protocol's request identifier), got {identifier!r}"
        )
    return InferenceRequest(tensors, outputs, identifier, parameters), binary_default


def _element_refused(found: UnreadableValue) -> str | None:
    """A refused value inside an input's ``data`` said as V2 names it: ``input 'x': element
    [0, 1] is …``; ``None`` elsewhere in the body (said by its path)."""
    path = found.path
    if len(path) <= 3 or path[0] != "inputs" or path[2] != "data":
        return None
    spec = found.document["inputs"][path[1]]
    name, shape = spec.get("name"), spec.get("shape")
    index = list(path[3:])
    if len(index) == 1 and type(shape) is list and all(type(d) is int for d in shape):
        element = element_at(index[0], shape)
    else:
        element = str(index)
    return f"input {quoted(name)}: element {element} is {found.problem}"


def _check_flag(value: Any, name: str, output: str | None) -> None:
    """The binary extension's flags are JSON booleans: ``"false"`` (a string, so truthy) or
    ``1`` read as a flag would pick the layout of the answer by accident."""
    if value is not None and type(value) is not bool:
        where = f"output {output!r}: " if output is not None else ""
        raise BadRequestError(
            f"{where}parameter {name} must be true or false (a JSON boolean), got {quoted(value)}"
        )


def _response(response: InferenceResponse, request: InferenceRequest, binary: bool) -> Reply:
    asked = {o.name: o.parameters for o in request.outputs} if request.outputs else {}
    outputs = []
    chunks = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        parameters = dict(tensor.parameters)
        wanted = asked.get(tensor.name)
        as_binary = wanted.get("binary_data", binary) if wanted else binary
        if as_binary:
            chunk = tensor.to_bytes()
            parameters["binary_data_size"] = len(chunk)
            chunks.append(chunk)
        else:
            entry["data"] = tensor.json_data()
        if parameters:
            entry["parameters"] = parameters
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        document["model_version"] = response.model_version
    if response.id is not None:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"] = outputs
    payload = orjson.dumps(document, option=_NUMPY)
    if not chunks:
        return 200, [(b"content-type", b"application/json")], payload
    headers = [
        (b"content-type", b"application/octet-stream"),
        (HEADER_LENGTH, str(len(payload)).encode()),
    ]
    return 200, headers, b"".join([payload, *chunks])


def _error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message})
