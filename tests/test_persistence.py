"""modelshelf.persistence against a real redis-server: restore, periodic save, errors."""

from __future__ import annotations

import pickle
import threading
import time

import pytest
import redis

from modelshelf.errors import ConfigurationError
from modelshelf.persistence import (
    PersistenceError,
    launcher_interface_name,
    period_from,
    persist,
    persistent,
    state_key,
)
from redisserver import running_redis


class Counter:
    """A component whose requests change its state, guarded by its own lock."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def predict(self, X, features_names=None):
        with self.lock:
            self.count += 1
        return X

    def __getstate__(self):
        with self.lock:
            return {"count": self.count}

    def __setstate__(self, state):
        with self.lock:
            self.count = state["count"]


class Plain:
    """No pickle hooks at all: its attributes are the state."""

    def __init__(self) -> None:
        self.learned = {"a": 1}


@pytest.fixture(scope="module")
def redis_server():
    with running_redis() as server:
        yield server


@pytest.fixture
def client(redis_server):
    client = redis_server.client()
    client.flushall()
    return client


def test_state_is_restored_by_the_next_process_and_saved_periodically(client):
    first = Counter()
    persister = persist(first, client=client, key="k", period=0.05)
    try:
        assert client.get("k") is None  # nothing to save yet: unchanged since start
        for _ in range(3):
            first.predict([[1]])
        deadline = time.monotonic() + 5
        while client.get("k") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pickle.loads(client.get("k")) == {"count": 3}
    finally:
        persister.stop()
    second = Counter()
    persist(second, client=client, key="k", period=60).stop()
    assert second.count == 3


def test_unchanged_state_is_not_written_again(client):
    component = Counter()
    persister = persist(component, client=client, key="k2", period=3600)
    try:
        component.predict([[1]])
        assert persister.save() is True
        client.set("k2", b"written by another process")
        assert persister.save() is False  # nothing new here: the other process's save stays
        assert client.get("k2") == b"written by another process"
    finally:
        persister.stop()


def test_an_idle_process_never_overwrites_what_another_learned_on_a_fresh_start(client):
    """Two processes (a REST worker and seldon's gRPC child) start on an empty Redis; only the one
    whose state changed may write, however many periods the idle one goes through."""
    idle, learning = Counter(), Counter()
    idle_persister = persist(idle, client=client, key="fresh", period=0.02)
    learning_persister = persist(learning, client=client, key="fresh", period=3600)
    try:
        learning.predict([[1]])
        assert learning_persister.save() is True
        time.sleep(0.3)  # fifteen of the idle process's periods
        assert pickle.loads(client.get("fresh")) == {"count": 1}
        assert idle_persister.saves == 0
    finally:
        idle_persister.stop()
        learning_persister.stop()
    assert pickle.loads(client.get("fresh")) == {"count": 1}


def test_attributes_are_the_state_without_pickle_hooks(client):
    component = Plain()
    persister = persist(component, client=client, key="plain", period=3600)
    component.learned["b"] = 2
    persister.stop()  # stopping saves once more
    restored = Plain()
    persist(restored, client=client, key="plain", period=3600).stop()
    assert restored.learned == {"a": 1, "b": 2}


def test_persist_twice_in_one_process_returns_the_running_persister(client):
    component = Counter()
    first = persist(component, client=client, key="twice", period=3600)
    try:
        assert persist(component, client=client, key="twice", period=3600) is first
    finally:
        first.stop()


def test_a_save_waiting_on_redis_does_not_block_requests(redis_server, client):
    component = Counter()
    persister = persist(component, client=client, key="slow", period=3600)
    component.predict([[1]])
    pauser = redis_server.client()
    pauser.execute_command("CLIENT", "PAUSE", "1500", "WRITE")  # Redis holds every write 1.5 s
    saving = threading.Thread(target=persister.save)
    started = time.monotonic()
    saving.start()
    time.sleep(0.2)
    assert saving.is_alive(), "the save should be waiting on the paused Redis"
    component.predict([[1]])  # takes the component's lock while the save waits
    assert time.monotonic() - started < 1.0
    saving.join(10)
    assert time.monotonic() - started >= 1.2
    persister.stop()
    assert pickle.loads(client.get("slow")) == {"count": 2}


def test_unreachable_redis_is_a_clear_error_at_start():
    from redisserver import free_port

    port = free_port()  # nothing listens there
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(PersistenceError) as caught:
        persist(Counter(), client=client, key="nowhere", period=1)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "REDIS_SERVICE_HOST" in message
    assert "nowhere" in message


def test_unpicklable_state_names_the_attribute(client):
    class WithLock:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    with pytest.raises(PersistenceError, match=r"attribute 'lock'.*__getstate__"):
        persist(WithLock(), client=client, key="lock", period=1)


def test_corrupt_saved_state_is_an_error_not_a_silent_reset(client):
    client.set("corrupt", b"not a pickle")
    with pytest.raises(PersistenceError, match="cannot be restored into Counter"):
        persist(Counter(), client=client, key="corrupt", period=1)


def test_key_and_period_come_from_the_environment():
    env = {"SELDON_DEPLOYMENT_ID": "sdep", "PREDICTOR_ID": "main", "PREDICTIVE_UNIT_ID": "router"}
    assert state_key(Counter(), env) == "modelshelf:state:sdep:main:router"
    assert state_key(Counter(), {}) == "modelshelf:state:local:default:Counter"
    assert period_from({}) == 60
    assert period_from({"PERSISTENCE_PERIOD": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigurationError, match="PERSISTENCE_PERIOD"):
            period_from({"PERSISTENCE_PERIOD": bad})


def test_persistent_subclass_runs_the_own_load_first(client, monkeypatch):
    monkeypatch.setenv("REDIS_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_SERVICE_PORT", str(client.connection_pool.connection_kwargs["port"]))
    monkeypatch.setenv("PERSISTENCE_PERIOD", "3600")
    calls = []

    class Loads(Counter):
        def load(self):
            calls.append("load")

    Wrapped = persistent(Loads)
    assert Wrapped.__name__ == "Loads" and issubclass(Wrapped, Loads)
    component = Wrapped()
    component.load()
    assert calls == ["load"]
    assert client.ping()
    import modelshelf.persistence as persistence

    running = persistence._persisters[id(component)]
    assert running.key == "modelshelf:state:local:default:Loads"
    running.stop()
    assert launcher_interface_name("MyRouter") == "modelshelf.persistence.MyRouter"
    assert launcher_interface_name("pkg.mod.C") == "modelshelf.persistence.pkg/mod/C"
