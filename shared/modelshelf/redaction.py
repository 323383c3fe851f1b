"""One way to show a URI or a message without the secrets it may carry.

Model URIs carry secrets in three places: user info (``https://reader:PASSWORD@host/…``), the
query string of a signed URL (``?X-Amz-Signature=…``, ``?X-Goog-Signature=…``, Azure's ``sig=``),
and -- outside the URI -- the credential variables beside it (``AWS_SECRET_ACCESS_KEY``,
``RCLONE_CONFIG_<REMOTE>_SECRET_ACCESS_KEY``, a service account's JSON…), whose values can
surface in a library's message. Everything modelshelf shows (health, metadata, errors, log lines,
command output) goes through ``redact_uri`` or ``redact_text``, so none of them leaves the
process. Parameter *names* stay (``?X-Amz-Signature=<redacted>`` still says "a signed URL").
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = [
    "MARK",
    "credential_values",
    "redact_parameter_list",
    "redact_parameters",
    "redact_text",
    "redact_uri",
    "secret_name",
    "shown_setting",
]

MARK = "<redacted>"

# A URL in text; a value already redacted stays part of it (redacting twice changes nothing).
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://(?:<redacted>|[^\s'\"<>`])+")
# The names of query parameters whose values are secrets.
_SECRET_NAMES = (
    r"(?:X-Amz|X-Goog)-(?:Signature|Credential|Security-Token)|sig|signature|"
    r"access_token|token|sas|password|secret|(?:api|access|secret|private|subscription)[_-]?key"
)
# ``key`` alone is an API key as a query parameter (Google's ``?key=``), but in prose and
# after a prefix mostly not (an object's key, ``sort_key``): a secret's name only as a whole
# query parameter name.
_KEY = "key"
# "name=value" pairs that are secrets wherever they appear (a path+query a library logs).
_SECRET_PARAMETER = re.compile(rf"(?i)(\b(?:{_SECRET_NAMES})|(?<=[?&]){_KEY})=([^&\s'\"<>]+)")
# A query parameter's whole (decoded) name: one of those, alone or after a prefix (auth_token,
# id_token, client_secret), or ``key``.
_SECRET_QUERY_NAME = re.compile(rf"(?i)(?:[A-Za-z0-9.]*[_-])?(?:{_SECRET_NAMES})|{_KEY}")
# Environment variables whose values are secrets (matched on the upper-cased name).
_SECRET_VARIABLE = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|_PASS$|CREDENTIALS$|PRIVATE_KEY|ACCOUNT_KEY|"
    r"CONNECTION_STRING|SAS_URL|_SAS$|API_KEY"
)
#: Variables that match but name a file, not a secret (their paths help a reader).
_PATH_VARIABLE = re.compile(r"_FILE$|^GOOGLE_APPLICATION_CREDENTIALS$")
#: A value shorter than this is not treated as a secret: replacing every "1" or "true" in a
#: message would make it unreadable, and such values are flags, not credentials.
MIN_SECRET_LENGTH = 6
_NOT_SECRETS = frozenset({"true", "false", "none", "null", "disabled", "enabled"})


def redact_uri(uri: str, values: Sequence[str] | None = None) -> str:
    """``uri`` with its user info, query values and fragment replaced by ``<redacted>``.

    Anything that is not a ``scheme://…`` URL (a local path, ``s3:bucket/key``) is returned as
    it is, except for credential values and secret ``name=value`` pairs (a signed query pasted
    after a local path: ``X-Amz-Signature=…``; see ``redact_text``) it may contain. ``values``: the
    ``credential_values()`` when the caller has them already (one scan of the environment
    per error, not one per part of its message).
    """
    if values is None:
        values = credential_values()
    if "://" not in uri:
        return _redact_values(_SECRET_PARAMETER.sub(_redacted_parameter, uri), values)
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:  # an unparseable authority: show no part of it
        scheme = uri.split("://", 1)[0]
        return f"{scheme}://{MARK}"
    if not (parts.netloc or parts.query or parts.fragment):
        return _redact_values(uri, values)  # a bare scheme, "s3://" (rebuilt, it reads "s3:")
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    if "@" in parts.netloc:
        netloc = f"{MARK}@{netloc}"
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    fragment = MARK if parts.fragment else ""
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, fragment))
    return _redact_values(shown, values)


def redact_text(
    text: str, environ: Mapping[str, str] | None = None, values: Sequence[str] | None = None
) -> str:
    """``text`` with every URL in it redacted (``redact_uri``), secret ``name=value`` query
    pairs redacted, and every value of a credential variable replaced by ``<redacted>``
    (``values``: the ``credential_values()`` when the caller has them already)."""
    if not text:
        return text
    if values is None:
        values = credential_values(environ)
    text = _URL_IN_TEXT.sub(lambda match: _redact_url_match(match.group(0), values), text)
    return _redact_values(_SECRET_PARAMETER.sub(_redacted_parameter, text), values)


def redact_parameters(query: str) -> str:
    """``query`` (a query string, as a request sent it) with the whole value of every parameter
    whose name, percent-decoded, is a secret's (``token``, ``signature``, ``password``,
    ``key``, ``api_key``, ``apikey``…, also after a prefix: ``auth_token``, ``client_secret``)
    replaced by ``<redacted>``; other values stay (unlike ``redact_uri``, which redacts every
    query value of a model URI). A value ends at ``&`` only: a quote in it is the value's, not
    its end."""
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, _, value = pair.partition("=")
        if value and _SECRET_QUERY_NAME.fullmatch(unquote_plus(name)):
            pairs[index] = f"{name}={MARK}"
    return "&".join(pairs)


def secret_name(name: str) -> bool:
    """Whether a setting called ``name`` holds a secret (``password``, ``db_token``,
    ``apikey``, ``AWS_SECRET_ACCESS_KEY``…): its whole value is never shown, whatever it
    looks like (a parameter's value need not be a URL or a known credential)."""
    upper = name.upper()
    if _SECRET_VARIABLE.search(upper):
        return not _PATH_VARIABLE.search(upper)
    return _SECRET_QUERY_NAME.fullmatch(name) is not None


def shown_setting(name: str, value: object) -> object:
    """``value`` as an error may show the setting ``name``: ``<redacted>`` for a secret's
    (``secret_name``) that is set, else as it is."""
    return MARK if secret_name(name) and value not in (None, "") else value


def redact_parameter_list(parameters_json: str) -> str:
    """A ``--parameters`` / ``PREDICTIVE_UNIT_PARAMETERS`` list as an error quotes it: the value of
    every entry whose name is a secret's (``secret_name``) replaced by ``<redacted>``, the rest
    through ``redact_text``. Text that is not such a list goes through ``redact_text`` only."""
    try:
        parameters = json.loads(parameters_json)
    except ValueError:
        return redact_text(parameters_json)
    if not isinstance(parameters, list):
        return redact_text(parameters_json)
    for entry in parameters:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and "value" in entry:
            entry["value"] = shown_setting(name, entry["value"])
    return redact_text(json.dumps(parameters, separators=(",", ":")))


def _redacted_parameter(match: re.Match) -> str:
    return f"{match.group(1)}={MARK}"


def credential_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of credential variables in ``environ`` (default: this process's environment),
    longest first; for a JSON value (a service account's key) its string fields as well."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in env.items():
        upper = name.upper()
        if (
            len(value) < MIN_SECRET_LENGTH
            or value.strip().lower() in _NOT_SECRETS
            or not _SECRET_VARIABLE.search(upper)
            or _PATH_VARIABLE.search(upper)
        ):
            continue
        found.add(value)
        if value.lstrip().startswith("{"):
            found.update(_json_strings(value))
    return sorted(found, key=len, reverse=True)


def _redact_url_match(url: str, values: Sequence[str]) -> str:
    # A URL in prose may end with punctuation that is not part of it.
    stripped = url.rstrip(".,;:)]}")
    return redact_uri(stripped, values) + url[len(stripped) :]


def _redact_pair(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}={MARK}" if equals else MARK


def _redact_values(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MARK)
    return text


def _json_strings(value: str) -> set[str]:
    try:
        data = json.loads(value)
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    return {
        item
        for key, item in data.items()
        if isinstance(item, str) and len(item) >= 16 and key not in ("type", "token_uri")
    }
