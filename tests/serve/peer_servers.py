"""The bench's peer venvs (``bench/peers/``: MLServer, mlflow) for differential tests.

``peer_bin("mlflow")`` makes the venv with the bench's own installer when it is missing (uv,
about 20 s) and gives its ``bin`` folder; the test is skipped, with the installer's reason, when
it cannot be made (no network, no uv and no pip).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def peer_bin(name: str) -> Path:
    from bench.systems import PEERS_DIR

    from bench import peers

    (env,) = [e for e in peers.peer_envs() if e.name == name]
    status = peers.ensure(env, PEERS_DIR, peers.uv_path())
    if not status.ok:
        pytest.skip(f"the bench's {name} venv could not be made: {status.error[-300:]}")
    return env.bin(PEERS_DIR)
