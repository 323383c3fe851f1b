# The MLflow server's conda variant: before-run creates (or reuses, by the spec's hash) a conda
# environment from the model's conda.yaml plus the server's own requirements, and `modelshelf run`
# starts the front end inside it. micromamba comes from MICROMAMBA_IMAGE (no conda channel or
# micromamba image can be reached where this was written: built only when MICROMAMBA_IMAGE is set).
#   buildah bud --layers --build-arg MLFLOWSERVER_IMAGE=localhost/modelshelf/mlflowserver:dev \
#       --build-arg MICROMAMBA_IMAGE=docker.io/mambaorg/micromamba:1.5.10 \
#       -t localhost/modelshelf/mlflowserver-conda:dev -f images/mlflowserver-conda.Dockerfile .
ARG MICROMAMBA_IMAGE=docker.io/mambaorg/micromamba:1.5.10
ARG MLFLOWSERVER_IMAGE=modelshelf/mlflowserver:latest
FROM ${MICROMAMBA_IMAGE} AS micromamba

FROM ${MLFLOWSERVER_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelshelf-mlflowserver-conda" \
      org.opencontainers.image.description="MLflow model server for Seldon Core whose before-run builds the model's conda environment (micromamba) and serves from it" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/modelshelf/modelshelf" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 0
COPY --from=micromamba /bin/micromamba /usr/local/bin/micromamba
# modelshelf is not on PyPI: the environment installs it from this wheel (MODELSHELF_WHEELS_DIR).
COPY pyproject.toml README.md /tmp/build/
COPY shared /tmp/build/shared
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation -w /whl /tmp/build && rm -rf /tmp/build
USER 8888
ENV MODELSHELF_ENV_MANAGER=conda \
    MAMBA_ROOT_PREFIX=/tmp/modelshelf/mamba \
    CONDA_PKGS_DIRS=/tmp/modelshelf/mamba/pkgs
