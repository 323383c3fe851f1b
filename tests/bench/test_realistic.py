"""The realistic set's measurement on a real ``modelshelf serve`` under real wrk load, batching on
and off: every load measured (rate, latency, server CPU), cold start and PSS read, the report
rendered. No figure is held to a threshold (speed belongs in ``make bench``)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from bench import realistic

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make test and make bench install it)"
)


def test_a_forest_is_measured_with_batching_on_and_off(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, realistic.FEATURES))
    forest = RandomForestClassifier(5, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    folder = tmp_path / "forest"
    folder.mkdir()
    joblib.dump(forest, folder / "model.joblib")
    model = realistic.RealModel(
        "forest",
        "RandomForestClassifier(5)",
        "SKLearnServer",
        folder,
        lambda n: functools.partial(forest.predict_proba, np.ones((n, realistic.FEATURES))),
        realistic._numeric_bodies("predict_proba"),
    )
    listed = realistic.systems_of(model, tmp_path)
    assert all(reason is None for _, reason in listed)  # no peers for this model
    names = {system.name: system for system, _ in listed}
    assert set(names) == {"serve-forest", "serve-forest-nobatch", "serve-forest-nofast"}
    assert names["serve-forest-nobatch"].env == {"MODELSHELF_MAX_BATCH_SIZE": "1"}
    assert names["serve-forest-nofast"].env == {"MODELSHELF_FAST_PATH": "false"}

    found: dict = {"seconds_per_load": 1, "models": {"forest": {
        "label": model.label, "own_call_us": {1: 1000, 100: 1000},
        "own_call_cpu_us": {1: 1000, 100: 1000}, "notes": "", "systems": {},
    }}}  # fmt: skip
    for system in names.values():
        measured = realistic.measure_system(system, model, tmp_path, 1)
        assert measured["cold_start_s"] > 0
        assert measured["memory"]["pss_mb"] > 0
        # Anonymous memory is part of PSS, and a Python server holds tens of MB of it.
        assert 10 < measured["memory"]["anonymous_pss_mb"] <= measured["memory"]["pss_mb"]
        for rows in realistic.ROWS:
            for connections in realistic.CONNECTIONS:
                load = measured[f"{rows}x{connections}"]
                assert load["requests"] > 0 and load["errors"] == 0, load
                assert load["cpu_ms_per_request"] > 0
        found["models"]["forest"]["systems"][system.name] = {
            "label": system.label,
            "role": system.role,
            **measured,
        }
    found["identity_cold_start_s"] = [0.5]
    text = realistic.render(json.loads(json.dumps(found)))
    assert text.count("| 1x16 |") == 3 and text.count("| 100x1 |") == 3
    # The targets table states this run's cold start against the identity's, and the overhead.
    cold = found["models"]["forest"]["systems"]["serve-forest"]["cold_start_s"]
    assert f"| forest | {cold:.2f} s = {cold / 0.5:.1f} x identity |" in text
    assert "| overhead <= 100 µs over the model's call | forest |" in text


def test_the_reference_is_the_faster_of_the_framework_and_the_served_call(tmp_path: Path) -> None:
    """The overhead's reference: the framework's call and the one our server makes (here the
    forest fast path), each timed; ``own_call`` never slower than either (wall and CPU)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, realistic.FEATURES))
    forest = RandomForestClassifier(20, random_state=0).fit(X, (X[:, 1] > 0).astype(int))
    folder = tmp_path / "forest"
    folder.mkdir()
    joblib.dump(forest, folder / "model.joblib")
    model = realistic.RealModel(
        "forest",
        "RandomForestClassifier(20)",
        "SKLearnServer",
        folder,
        lambda n: functools.partial(forest.predict_proba, np.ones((n, realistic.FEATURES))),
        realistic._numeric_bodies("predict_proba"),
    )
    found = realistic.reference_calls(model, print)
    for rows in realistic.ROWS:
        framework, served = found["framework_call_us"][rows], found["served_call_us"][rows]
        assert framework > 0 and served > 0
        assert found["own_call_us"][rows] == min(framework, served)
        cpu = (found["framework_call_cpu_us"][rows], found["served_call_cpu_us"][rows])
        assert found["own_call_cpu_us"][rows] == min(cpu)
    # the served call with its data evicted from the caches: timed, and said in the report
    assert found["served_cold_call_us"][1] > 0
    text = realistic._reference_text(json.loads(json.dumps(found)))[0]
    assert "the faster of the framework's public call" in text
    assert f"{found['served_cold_call_us'][1]:.0f} µs -- part of the wall overhead" in text


def test_chosen_models_reads_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(realistic.MODELS_VARIABLE, raising=False)
    assert realistic.chosen_models() is None
    monkeypatch.setenv(realistic.MODELS_VARIABLE, " xgboost_300x6, lightgbm_300 ,")
    assert realistic.chosen_models() == {"xgboost_300x6", "lightgbm_300"}


def _system(label: str, role: str) -> dict:
    """A measured system whose every load ran at 1,000 req/s (1,000 µs a request) and 2 ms of
    CPU a request."""
    load = {"requests_per_s": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_ms_per_request": 2.0}
    return {
        "label": label,
        "role": role,
        "cold_start_s": 1.0,
        "memory": {"pss_mb": 100.0, "processes": 2},
        **{f"{r}x{c}": load for r in realistic.ROWS for c in realistic.CONNECTIONS},
    }


def test_only_our_fast_path_rows_are_measured_against_its_faster_call() -> None:
    """A peer, and ours with the fast path off, make the framework's call: their overhead is
    over it (1,000 - 600 µs), not over our fast path's faster one (1,000 - 100 µs)."""
    calls = {"1": 600.0, "100": 600.0}
    fast = {"1": 100.0, "100": 100.0}
    model = {
        "label": "M",
        "server": "SKLearnServer",
        "own_call_us": fast,
        "own_call_cpu_us": fast,
        "framework_call_us": calls,
        "framework_call_cpu_us": calls,
        "served_call_us": fast,
        "served_call_cpu_us": fast,
        "notes": "",
        "systems": {
            "serve-m": _system("ours", "ours"),
            "serve-m-nofast": _system("ours, fast path off", "ours"),
            "kserve-m": _system("a peer", "peer"),
        },
    }
    found = {"seconds_per_load": 1, "identity_cold_start_s": [0.5], "models": {"m": model}}
    text = realistic.render(found)
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if "| 1x1 |" in line}
    # the last two columns: CPU overhead (2,000 µs - the reference's CPU), wall overhead
    assert rows["ours"].endswith("| 1900 | 900 |"), rows
    assert rows["ours, fast path off"].endswith("| 1400 | 400 |"), rows
    assert rows["a peer"].endswith("| 1400 | 400 |"), rows
