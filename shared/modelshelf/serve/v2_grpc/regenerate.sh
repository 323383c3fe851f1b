#!/usr/bin/env bash
# Regenerates open_inference_grpc_pb2.py and open_inference_grpc_pb2_grpc.py from
# open_inference_grpc.proto (the Open Inference Protocol's gRPC API; source in README.md here).
#
# grpcio-tools 1.62.3 exactly: its stubs need protobuf >= 3.20 at run time, which is what
# seldon-core 1.18.2 pins. Later versions write stubs that import
# google.protobuf.runtime_version (protobuf 5) and fail there; 1.48.2, the last built for
# protobuf < 4, has no Python 3.11 wheel. The tools go into a throwaway venv, never the
# project's (their protobuf 4 would replace seldon-core's 3.20).
#
#   shared/modelshelf/serve/v2_grpc/regenerate.sh     (GRPC_TOOLS_VENV=/path to reuse a venv)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
venv="${GRPC_TOOLS_VENV:-$(mktemp -d)/grpctools}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet 'grpcio-tools==1.62.3'

cd "$here"
"$venv/bin/python" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. \
    open_inference_grpc.proto
# protoc writes a top-level import; the stubs live in a package.
sed -i 's/^import open_inference_grpc_pb2 as /from . import open_inference_grpc_pb2 as /' \
    open_inference_grpc_pb2_grpc.py
echo "regenerated: $here/open_inference_grpc_pb2.py, open_inference_grpc_pb2_grpc.py"
