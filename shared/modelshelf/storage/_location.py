"""What a model URI names: which storage, which bucket and key, and how to show it safely.

Accepted forms: local paths and ``file://``; ``s3://bucket/key``; ``gs://bucket/key``;
``http(s)://…``; and rclone-style ``REMOTE:bucket/key`` as Seldon's rclone storage initializer
takes them, where ``REMOTE`` is configured by ``RCLONE_CONFIG_<REMOTE>_*`` environment variables
(or, without configuration, is itself ``s3``, ``gs`` or ``gcs``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from modelshelf.errors import StorageAccessError, StorageError
from modelshelf.redaction import redact_uri as redact

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
# rclone: "remote:path"; a single letter is left alone (it could be a Windows drive).
_RCLONE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]+):(?!//)(.*)$", re.DOTALL)

# rclone backend type -> our kind
_RCLONE_TYPES = {"s3": "s3", "google cloud storage": "gs", "gcs": "gs", "http": "http"}
_REMOTE_NAMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs"}


@dataclass(frozen=True)
class Location:
    """A parsed model URI. ``kind`` is ``local``, ``s3``, ``gs`` or ``http``."""

    uri: str
    kind: str
    bucket: str = ""
    key: str = ""
    #: rclone ``RCLONE_CONFIG_<REMOTE>_*`` settings (lower-case keys) that apply, if any.
    rclone: dict[str, str] = field(default_factory=dict)
    #: whether the rclone settings came from the URI's own remote (they then win over AWS_* env).
    rclone_remote: str = ""
    #: for ``http``: the URL to fetch (may carry a signature: never log it).
    url: str = ""

    @property
    def display(self) -> str:
        """The URI without secrets (user info, query string), for logs and errors."""
        return redact(self.uri)

    @property
    def name(self) -> str:
        """The last path segment (file or folder name), for cache folder names."""
        path = urlsplit(self.url).path if self.kind == "http" else self.key
        return path.rstrip("/").rsplit("/", 1)[-1] or self.bucket


def rclone_config(remote: str) -> dict[str, str]:
    """``RCLONE_CONFIG_<REMOTE>_<OPTION>`` variables as ``{option (lower case): value}``."""
    prefix = f"RCLONE_CONFIG_{remote.upper().replace('-', '_').replace('.', '_')}_"
    return {
        name[len(prefix) :].lower(): value
        for name, value in os.environ.items()
        if name.startswith(prefix) and value != ""
    }


def parse(uri: str) -> Location:
    """Split ``uri`` into storage kind, bucket and key; unknown schemes are an error."""
    match = _URL.match(uri)
    if match:
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme == "file":
            return Location(uri, "local")
        if scheme in ("s3", "s3a"):
            return _bucket_location(uri, "s3", rest, rclone_config("s3"), "")
        if scheme in ("gs", "gcs"):
            return _bucket_location(uri, "gs", rest, rclone_config("gs"), "")
        if scheme in ("http", "https"):
            return Location(uri, "http", url=uri)
        raise StorageError(
            redact(uri),
            f"unsupported scheme {scheme!r}: expected a local path, file://, s3://, gs://, "
            "http(s):// or an rclone remote such as s3:bucket/path",
        )
    match = _RCLONE.match(uri)
    if match and not uri.startswith(("/", ".")):
        remote, rest = match.group(1), match.group(2)
        config = rclone_config(remote)
        rclone_type = config.get("type", "").lower()
        kind = _RCLONE_TYPES.get(rclone_type) or (
            _REMOTE_NAMES.get(remote.lower()) if not rclone_type else None
        )
        if kind == "http":
            base = config.get("url", "")
            if not base:
                raise StorageError(uri, f"rclone remote {remote!r} has no RCLONE_CONFIG_*_URL")
            url = base.rstrip("/") + "/" + rest.lstrip("/")
            return Location(uri, "http", url=url, rclone=config, rclone_remote=remote)
        if kind in ("s3", "gs"):
            return _bucket_location(uri, kind, rest, config, remote)
        if rclone_type == "local":
            return Location(rest, "local")
        if rclone_type:
            raise StorageError(
                uri,
                f"rclone remote {remote!r} has type {rclone_type!r}: modelshelf reads s3, "
                "google cloud storage and http remotes",
            )
        # "name:thing" with no such remote configured: a local path with a colon in it.
    return Location(uri, "local")


#: Where each bucket store's credentials are read from (README, configuration table).
_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another source boto3 reads: "
    "AWS_SESSION_TOKEN, AWS_PROFILE, a web identity, a role), or rclone's "
    "RCLONE_CONFIG_<REMOTE>_ACCESS_KEY_ID / _SECRET_ACCESS_KEY",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (a service account key file; or google-auth's chain), "
    "or rclone's RCLONE_CONFIG_<REMOTE>_SERVICE_ACCOUNT_CREDENTIALS",
}


def _bucket_location(
    uri: str, kind: str, rest: str, rclone: dict[str, str], remote: str
) -> Location:
    bucket, _, key = rest.lstrip("/").partition("/")
    if not bucket:
        raise StorageError(redact(uri), f"no bucket: expected {kind}://BUCKET/PATH")
    if "@" in bucket:  # no bucket name holds "@": user info, which boto3 would take as the name
        user_info = bucket.rpartition("@")[0] + "@"
        without = uri.replace(user_info, "", 1)
        raise StorageAccessError(
            redact(uri.replace(user_info, "<redacted>@", 1)),  # the rclone form too
            f"credentials in the URI (before '@') are not read: set {_CREDENTIALS[kind]} -- "
            "e.g. from the Secret envSecretRefName or envFrom names -- and write the URI "
            f"without them: {redact(without)}",
        )
    return Location(
        uri, kind, bucket=bucket, key=key.strip("/"), rclone=rclone, rclone_remote=remote
    )
