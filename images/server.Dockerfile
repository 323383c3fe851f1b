# One server image: the registered server SERVER (shared/modelshelf/registry.py) on the shared deps
# layers; the model is read from /mnt/models (or any model_uri in PREDICTIVE_UNIT_PARAMETERS).
# images/build.sh passes the registry's build arguments; by hand, from the repository root after
# images/base.Dockerfile's deps target:
#   buildah bud --layers --build-arg DEPS_IMAGE=localhost/modelshelf/deps:dev \
#       $(python3 shared/modelshelf/registry.py build-args xgboostserver | sed 's/^/--build-arg /') \
#       -t localhost/modelshelf/xgboostserver:dev -f images/server.Dockerfile .
ARG DEPS_IMAGE=modelshelf/deps:latest
FROM ${DEPS_IMAGE}
ARG VERSION=0.1.0
ARG SERVER=sklearnserver
ARG EXTRA=sklearn
ARG MODEL_NAME=SKLearnServer
ARG DESCRIPTION="scikit-learn model server for Seldon Core (SKLearnServer, Seldon protocol)"
LABEL org.opencontainers.image.title="modelshelf-${SERVER}" \
      org.opencontainers.image.description="${DESCRIPTION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/modelshelf/modelshelf" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 0
COPY pyproject.toml images/requirements.py images/constraints.txt images/slim-venv.sh /tmp/build/
RUN python3 /tmp/build/requirements.py /tmp/build/pyproject.toml s3 gcs "${EXTRA}" > /tmp/build/requirements.txt \
 && pip install --no-cache-dir --no-compile -c /tmp/build/constraints.txt -r /tmp/build/requirements.txt \
 && sh /tmp/build/slim-venv.sh "$VIRTUAL_ENV" \
 && rm -rf /tmp/build
COPY pyproject.toml README.md /tmp/build/
COPY shared /tmp/build/shared
RUN pip install --no-cache-dir --no-deps --no-build-isolation /tmp/build && rm -rf /tmp/build
COPY servers/${SERVER} /opt/modelshelf/server
USER 8888
ENV MODEL_NAME=${MODEL_NAME} SERVICE_TYPE=MODEL PERSISTENCE=0 \
    PREDICTIVE_UNIT_PARAMETERS='[{"name":"model_uri","value":"/mnt/models","type":"STRING"}]'
ENTRYPOINT ["modelshelf", "run"]
