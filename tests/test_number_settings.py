"""``modelshelf.number_settings``: every number setting read by one set of rules -- NaN,
infinities, negatives and non-numbers refused with an error naming the variable and value --
and the values the README documents still taken."""

from __future__ import annotations

import subprocess

import pytest

from microservice import BIN
from modelshelf.errors import ConfigurationError, SettingError
from modelshelf.number_settings import env_number, number_value, whole_env_number
from modelshelf.persistence import period_from, redis_client
from modelshelf.request_guard import max_body_bytes
from modelshelf.serve.batching import BatchSettings
from modelshelf.serve.http1.server import client_min_speed, client_stall_seconds
from modelshelf.serve.supervisor import max_worker_restarts
from modelshelf.storage._archive import ArchiveLimits
from modelshelf.storage._sync import concurrency
from modelshelf.storage._transfer import Limits

REFUSED = ["nan", "NaN", "inf", "-inf", "Infinity", "-1", "-0.5", "ten", "1,5", "0x10"]

#: Every number setting: how the server reads it, the value it holds (from what the reader
#: returns), and the values the README's table documents with what each must read as.
SETTINGS = {
    "MODELSHELF_MAX_BODY_BYTES": (
        max_body_bytes,
        lambda read: read,
        {"67108864": 67_108_864, "1048576": 1_048_576, "1e6": 1_000_000},
    ),
    "MODELSHELF_MAX_WORKER_RESTARTS": (
        max_worker_restarts,
        lambda read: read,
        {"10": 10, "3": 3, "0": 0},
    ),
    "MODELSHELF_MAX_BATCH_SIZE": (
        BatchSettings.from_environment,
        lambda read: read.max_rows,
        {"256": 256, "1": 1},
    ),
    "MODELSHELF_MAX_BATCH_TIME_MS": (
        BatchSettings.from_environment,
        lambda read: read.max_wait_seconds,
        {"0": 0.0, "2": 0.002, "60000": 60.0},
    ),
    "MODELSHELF_CLIENT_STALL_SECONDS": (
        client_stall_seconds,
        lambda read: read,
        {"30": 30.0, "2": 2.0, "0.5": 0.5},
    ),
    "MODELSHELF_CLIENT_MIN_SPEED": (
        client_min_speed,
        lambda read: read,
        {"1024": 1024.0, "0": 0.0, "2": 2.0},
    ),
    "MODELSHELF_DOWNLOAD_TIMEOUT": (
        Limits.from_environ,
        lambda read: read.timeout,
        {"3600": 3600.0, "20": 20.0},
    ),
    "MODELSHELF_DOWNLOAD_CONNECT_TIMEOUT": (
        Limits.from_environ,
        lambda read: read.connect_timeout,
        {"10": 10.0, "0.5": 0.5},
    ),
    "MODELSHELF_DOWNLOAD_MIN_SPEED": (
        Limits.from_environ,
        lambda read: read.min_speed,
        {"1024": 1024, "0": 0, "0.5": 0.5, "1536.5": 1536.5},  # a rate: fractions kept
    ),
    "MODELSHELF_DOWNLOAD_SPEED_WINDOW": (
        Limits.from_environ,
        lambda read: read.speed_window,
        {"30": 30.0},
    ),
    "MODELSHELF_DOWNLOAD_CONCURRENCY": (
        concurrency,
        lambda read: read,
        {"10": 10, "1": 1, "1e1": 10},
    ),
    "MODELSHELF_ARCHIVE_MAX_BYTES": (
        ArchiveLimits.from_environ,
        lambda read: read.max_bytes,
        {"68719476736": 68_719_476_736, "1e9": 1_000_000_000},
    ),
    "MODELSHELF_ARCHIVE_MAX_RATIO": (
        ArchiveLimits.from_environ,
        lambda read: read.max_ratio,
        {"100": 100.0, "2.5": 2.5},
    ),
    "MODELSHELF_ARCHIVE_MAX_FILES": (
        ArchiveLimits.from_environ,
        lambda read: read.max_files,
        {"10000": 10_000},
    ),
    "REDIS_SERVICE_PORT": (
        redis_client,
        lambda read: read.connection_pool.connection_kwargs["port"],
        {"6379": 6379, "16379": 16379, "65535": 65535},
    ),
    "PERSISTENCE_PERIOD": (
        period_from,
        lambda read: read,
        {"60": 60.0, "0.5": 0.5},
    ),
}


@pytest.mark.parametrize("variable", sorted(SETTINGS))
def test_documented_values_are_taken_and_nonsense_is_refused_naming_it(variable, monkeypatch):
    read, value_of, documented = SETTINGS[variable]
    for text, expected in documented.items():
        monkeypatch.setenv(variable, text)
        assert value_of(read()) == expected, text
    for text in REFUSED:
        monkeypatch.setenv(variable, text)
        with pytest.raises(SettingError) as refused:
            read()
        assert refused.value.parameter == variable
        assert f"environment variable {variable}={text!r} is not valid: expected" in str(
            refused.value
        )
        assert isinstance(refused.value, ConfigurationError)  # what callers already catch


@pytest.mark.parametrize(
    "variable",
    [
        "MODELSHELF_ARCHIVE_MAX_BYTES",
        "MODELSHELF_ARCHIVE_MAX_FILES",
        "MODELSHELF_DOWNLOAD_CONCURRENCY",
    ],
)
def test_a_count_is_whole_a_fraction_is_refused_not_rounded(variable, monkeypatch):
    """``1.5`` archive bytes or files read as 1 (``int()`` of the number) before."""
    read = SETTINGS[variable][0]
    monkeypatch.setenv(variable, "1.5")
    with pytest.raises(SettingError, match=rf"environment variable {variable}='1\.5'"):
        read()


@pytest.mark.parametrize("text", ["0", "65536", "6379.5"])
def test_a_redis_port_outside_the_tcp_range_is_refused_naming_it(text, monkeypatch):
    """``int()`` took 0, -1 and 70000: the error came at connect, without the variable."""
    monkeypatch.setenv("REDIS_SERVICE_PORT", text)
    with pytest.raises(SettingError) as refused:
        redis_client()
    assert str(refused.value) == (
        f"environment variable REDIS_SERVICE_PORT={text!r} is not valid: "
        "expected a TCP port number, 1-65535"
    )


def test_zero_only_where_the_setting_says_what_it_means(monkeypatch):
    monkeypatch.setenv("SOME_SECONDS", "0")
    with pytest.raises(SettingError, match="expected a number of seconds > 0"):
        env_number("SOME_SECONDS", 30, "a number of seconds > 0")
    assert env_number("SOME_SECONDS", 30, "seconds >= 0", zero=True) == 0
    monkeypatch.setenv("SOME_SECONDS", "  ")
    assert env_number("SOME_SECONDS", 30, "seconds") == 30  # blank: the default


def test_whole_numbers_are_exact_and_fractions_refused(monkeypatch):
    monkeypatch.setenv("SOME_BYTES", str(2**60 + 1))
    assert whole_env_number("SOME_BYTES", 1, "bytes") == 2**60 + 1  # not through a float
    monkeypatch.setenv("SOME_BYTES", "1e6")
    assert whole_env_number("SOME_BYTES", 1, "bytes") == 1_000_000
    monkeypatch.setenv("SOME_BYTES", "1.5")
    with pytest.raises(SettingError, match=r"SOME_BYTES='1\.5'"):
        whole_env_number("SOME_BYTES", 1, "bytes")


def test_an_upper_bound_and_a_parameter_source():
    assert number_value("wait", "60000", "0 to 60000", zero=True, at_most=60_000) == 60_000
    with pytest.raises(SettingError, match="parameter wait='60001'"):
        number_value("wait", "60001", "0 to 60000", zero=True, at_most=60_000)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_nan_or_infinite_download_timeout_stops_fetch_naming_it(tmp_path, value):
    """``nan`` and ``inf`` were taken as the download timeout (NaN passed the < 0 check)."""
    result = subprocess.run(
        [str(BIN / "modelshelf"), "fetch", "http://127.0.0.1:9/model.joblib", str(tmp_path)],
        env={"MODELSHELF_DOWNLOAD_TIMEOUT": value, "PATH": str(BIN)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert f"MODELSHELF_DOWNLOAD_TIMEOUT={value!r} is not valid" in result.stderr, result.stderr
