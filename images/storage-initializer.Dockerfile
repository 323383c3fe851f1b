# Storage initializer: `modelshelf fetch URI DEST` as an init container (args [URI, /mnt/models],
# credentials from envFrom a secret), the convention of Seldon's and KServe's initializers.
# Built on the base image, so on a node that runs a server its layers are already there.
ARG MODELSHELF_BASE=modelshelf/base:latest
FROM ${MODELSHELF_BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelshelf-storage-initializer" \
      org.opencontainers.image.description="Downloads a model (s3://, gs://, https://, rclone remote:path) into a folder: modelshelf fetch URI DEST" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/modelshelf/modelshelf" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 8888
ENTRYPOINT ["modelshelf", "fetch"]
