# The layers every modelshelf image shares. Two targets:
#   deps  Python venv with seldon-core, modelshelf's own dependencies and the s3/gcs clients
#         (no modelshelf source: a source change never invalidates this layer)
#   base  deps + modelshelf: runs any SeldonComponent class copied into /opt/modelshelf/server
#         (MODEL_NAME names it) and is the storage initializer's image
# Build from the repository root:
#   buildah bud --layers --target base -t localhost/modelshelf/base:dev -f images/base.Dockerfile .
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS deps
ARG VERSION=0.1.0
ENV VIRTUAL_ENV=/opt/modelshelf/venv \
    PATH=/opt/modelshelf/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MODELSHELF_MODEL_CACHE=/tmp/modelshelf/models \
    MODELSHELF_ENV_DIR=/tmp/modelshelf/env
COPY pyproject.toml images/requirements.py images/constraints.txt images/slim-venv.sh /tmp/build/
RUN python3 -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir --no-compile setuptools==80.10.2 wheel==0.48.0 \
 && python3 /tmp/build/requirements.py /tmp/build/pyproject.toml s3 gcs > /tmp/build/requirements.txt \
 && pip install --no-cache-dir --no-compile -c /tmp/build/constraints.txt -r /tmp/build/requirements.txt \
 && sh /tmp/build/slim-venv.sh "$VIRTUAL_ENV" \
 && rm -rf /tmp/build
# uid 8888 as Seldon's images; group 0 so a random uid (OpenShift) can read what 8888 can.
RUN echo 'modelshelf:x:8888:0:modelshelf:/tmp:/usr/sbin/nologin' >> /etc/passwd
WORKDIR /opt/modelshelf/server
EXPOSE 9000 9500 6000
USER 8888

FROM deps AS base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelshelf-base" \
      org.opencontainers.image.description="Python, seldon-core and modelshelf: serves the SeldonComponent class MODEL_NAME from /opt/modelshelf/server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/modelshelf/modelshelf" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 0
COPY pyproject.toml README.md /tmp/build/
COPY shared /tmp/build/shared
RUN pip install --no-cache-dir --no-deps --no-build-isolation /tmp/build && rm -rf /tmp/build
USER 8888
ENV SERVICE_TYPE=MODEL PERSISTENCE=0 \
    PREDICTIVE_UNIT_PARAMETERS='[{"name":"model_uri","value":"/mnt/models","type":"STRING"}]'
ENTRYPOINT ["modelshelf", "run"]
