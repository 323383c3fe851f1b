# MLFlowServer on the shared deps layers; the model is read from /mnt/models
# (or any model_uri in PREDICTIVE_UNIT_PARAMETERS). Build from the repository root after
# images/base.Dockerfile's deps target (make images does both):
#   buildah bud --layers --build-arg DEPS_IMAGE=localhost/modelshelf/deps:dev \
#       -t localhost/modelshelf/mlflowserver:dev -f images/mlflowserver.Dockerfile .
ARG DEPS_IMAGE=modelshelf/deps:latest
FROM ${DEPS_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelshelf-mlflowserver" \
      org.opencontainers.image.description="MLflow model server for Seldon Core (MLFlowServer on mlflow-skinny; before-run installs the model's requirements into MODELSHELF_ENV_DIR)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/modelshelf/modelshelf" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 0
COPY pyproject.toml images/requirements.py images/constraints.txt images/slim-venv.sh /tmp/build/
RUN python3 /tmp/build/requirements.py /tmp/build/pyproject.toml s3 gcs mlflow > /tmp/build/requirements.txt \
 && pip install --no-cache-dir --no-compile -c /tmp/build/constraints.txt -r /tmp/build/requirements.txt \
 && sh /tmp/build/slim-venv.sh "$VIRTUAL_ENV" \
 && rm -rf /tmp/build
COPY pyproject.toml README.md /tmp/build/
COPY shared /tmp/build/shared
RUN pip install --no-cache-dir --no-deps --no-build-isolation /tmp/build && rm -rf /tmp/build
COPY servers/mlflowserver/MLFlowServer.py servers/mlflowserver/before-run /opt/modelshelf/server/
USER 8888
ENV MODEL_NAME=MLFlowServer SERVICE_TYPE=MODEL PERSISTENCE=0 \
    PREDICTIVE_UNIT_PARAMETERS='[{"name":"model_uri","value":"/mnt/models","type":"STRING"}]'
ENTRYPOINT ["modelshelf", "run"]
