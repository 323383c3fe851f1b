"""Numbers from environment variables (and parameters): one parser, one set of rules.

Three parsers had drifted apart: one took ``nan`` and ``inf`` as timeouts (``float`` reads
both, and NaN passes every ``< 0`` check), one refused ``inf``, one took only whole numbers. The
rules now, for every number setting: unset or blank is the default; the text must be a number
Python reads (``30``, ``0.5``, ``1e3``; a whole-number setting also ``64_000``-style digits);
NaN and infinities are refused -- no setting documents an infinite value, and an infinite
timeout or limit is better said by the setting's own "off" value where it has one (``0``);
negative numbers are refused; 0 only where the setting says what 0 means. A refusal is a
``SettingError`` naming the variable, the value and what was expected.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from modelshelf.errors import SettingError

__all__ = ["env_number", "number_value", "whole_env_number"]


def number_value(
    name: str,
    text: str,
    expected: str,
    *,
    zero: bool = False,
    at_most: float | None = None,
    source: str = "parameter",
) -> float:
    """The finite number ``text`` is (``name`` is what set it, for the error): above 0, or 0
    too with ``zero``, and no more than ``at_most``; else ``SettingError`` saying ``expected``."""
    try:
        value = float(text)
    except ValueError:
        raise SettingError(name, text, expected, source) from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise SettingError(name, text, expected, source)
    if at_most is not None and value > at_most:
        raise SettingError(name, text, expected, source)
    return value


def env_number(
    name: str,
    default: float,
    expected: str,
    *,
    zero: bool = False,
    at_most: float | None = None,
) -> float:
    """Environment variable ``name`` as ``number_value`` reads it; ``default`` when unset or
    blank."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    return number_value(
        name, text, expected, zero=zero, at_most=at_most, source="environment variable"
    )


def whole_env_number(
    name: str,
    default: int,
    expected: str,
    *,
    zero: bool = False,
    at_most: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """A count (bytes, rows, files, a port) from environment variable ``name`` (in ``environ``,
    by default the process's): as ``env_number``, and whole (``1e6`` is 1000000; ``1.5`` is
    refused). Exact beyond 2**53: digits are read as an integer, not through a float."""
    text = (os.environ if environ is None else environ).get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        number = number_value(
            name, text, expected, zero=zero, at_most=at_most, source="environment variable"
        )
        if not number.is_integer():
            raise SettingError(name, text, expected, "environment variable") from None
        return int(number)
    if value < 0 or (value == 0 and not zero) or (at_most is not None and value > at_most):
        raise SettingError(name, text, expected, "environment variable")
    return value
