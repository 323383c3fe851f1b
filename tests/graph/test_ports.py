"""The port picker the graph runner and the test harness share (modelshelf.graph.ports)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from modelshelf.graph import ports

PICK_IN_A_CHILD = (
    "import json; from modelshelf.graph import ports; print(json.dumps(ports.free_ports(40)))"
)


def test_ports_are_outside_the_ephemeral_range_and_never_repeat_in_a_process():
    first, last = ports.ephemeral_range()
    picked = ports.free_ports(50) + [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == len(picked)
    assert all(not first <= port <= last for port in picked)
    assert all(port in ports.PORTS for port in picked)


def test_a_port_something_listens_on_is_skipped():
    taken = ports.free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        assert not ports._bindable(taken)
        assert ports._bindable(ports.free_port())


def test_processes_picking_at_the_same_time_get_different_ports():
    children = [
        subprocess.Popen([sys.executable, "-c", PICK_IN_A_CHILD], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    picked = [json.loads(child.communicate(timeout=60)[0]) for child in children]
    everyone = [port for child in picked for port in child]
    assert len(set(everyone)) == len(everyone) == 160


def test_the_range_is_on_the_side_of_the_ephemeral_range_with_more_room():
    assert ports.port_range((32768, 60999)) == range(22768, 32768)
    assert ports.port_range((1024, 49151)) == range(49152, 59152)
    assert ports.port_range((5000, 65535)) == range(1024, 5000)
