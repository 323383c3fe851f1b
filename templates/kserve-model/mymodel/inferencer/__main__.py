"""The container's entry point: ``python -m mymodel.inferencer``.

Reads what KServe gives a custom predictor -- ``--model_name`` / ``MODEL_NAME``, ``--model_dir`` /
``MODEL_DIR`` (``STORAGE_URI``, which KServe's storage initializer resolves to ``/mnt/models``),
``--http_port`` / ``HTTP_PORT``, ``--grpc_port`` / ``GRPC_PORT`` -- and serves the model until
SIGTERM.
"""

from modelshelf.kserve_model import ModelServer, model_server_arguments
from mymodel.inferencer.model import IrisModel

if __name__ == "__main__":
    args = model_server_arguments()
    model = IrisModel(args.model_name, args.model_dir)
    model.load()
    ModelServer().start([model])
