"""Nodes on separate machines, as far as the network goes: each node runs in a network
namespace of its own, joined by a veth pair that this test creates and removes. Nothing
crosses loopback between them. Skipped (with the reason) where namespaces cannot be made."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.timeout(180)


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_namespaces() -> Iterator[list[tuple[str, str, str]]]:
    """[(namespace, address, its veth device)] x 2, wired together on a random 10.x.y.0/24."""
    suffix = secrets.token_hex(3)
    names = [f"afa-{suffix}", f"afb-{suffix}"]
    subnet = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
    made: list[str] = []
    try:
        for name in names:
            done = _ip("netns", "add", name)
            if done.returncode != 0:
                pytest.skip(
                    f"this machine forbids network namespaces (ip netns add: "
                    f"{done.stderr.strip() or done.returncode})"
                )
            made.append(name)
        veth = [f"va{suffix}", f"vb{suffix}"]
        steps = [("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])]
        for name, dev, host in zip(names, veth, (1, 2), strict=True):
            steps += [
                ("link", "set", dev, "netns", name),
                ("-n", name, "addr", "add", f"{subnet}.{host}/24", "dev", dev),
                ("-n", name, "link", "set", dev, "up"),
                ("-n", name, "link", "set", "lo", "up"),
            ]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                pytest.skip(
                    f"cannot wire the namespaces (ip {' '.join(step)}: {done.stderr.strip()})"
                )
        yield [(names[0], f"{subnet}.1", veth[0]), (names[1], f"{subnet}.2", veth[1])]
    finally:
        for name in made:
            _ip("netns", "del", name)  # removes its end of the veth pair, and so both


def test_nodes_in_separate_network_namespaces(local_cluster, two_namespaces, poll_until):
    (ns_head, ip_head, _), (ns_node, ip_node, veth_node) = two_namespaces
    head = local_cluster.add_node(
        num_cpus=1,
        host=ip_head,
        wrapper=["ip", "netns", "exec", ns_head],
        env={"ACTORFLOW_NODE_TIMEOUT_SECONDS": "3"},
    )
    far = local_cluster.add_node(
        num_cpus=1, host=ip_node, resources={"far": 1}, wrapper=["ip", "netns", "exec", ns_node]
    )
    assert head["address"].startswith(f"tcp://{ip_head}:")
    assert far["address"].startswith(f"tcp://{ip_node}:")
    driver = textwrap.dedent(f"""
        import os, actorflow
        info = actorflow.init(address={local_cluster.address!r})
        assert info["node_id"] == {head["node_id"]!r}, info

        @actorflow.remote(resources={{"far": 1}})
        def where(data):
            import socket
            return actorflow.get_runtime_context().get_node_id(), len(data)

        node, size = actorflow.get(where.remote(b"x" * 50_000), timeout=60)
        assert node == {far["node_id"]!r} and size == 50_000, (node, size)

        @actorflow.remote(resources={{"far": 1}})
        class Far:
            def ping(self, n):
                return n + 1

        far_actor = Far.remote()
        assert actorflow.get([far_actor.ping.remote(i) for i in range(20)]) == list(range(1, 21))
        print("ok")
    """)
    env = dict(os.environ, ACTORFLOW_SESSION_ROOT=local_cluster.session_root)
    done = subprocess.run(
        ["ip", "netns", "exec", ns_head, sys.executable, "-c", driver],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.strip().endswith("ok")

    # Cut the wire: no connection closes, so only missed heartbeats can tell.
    assert _ip("-n", ns_node, "link", "set", veth_node, "down").returncode == 0
    watcher = textwrap.dedent(f"""
        import time, actorflow
        actorflow.init(address={local_cluster.address!r})
        deadline = time.monotonic() + 60
        while True:
            far = [n for n in actorflow.nodes() if n["NodeID"] == {far["node_id"]!r}][0]
            if not far["Alive"]:
                print(far["DeathCause"])
                break
            assert time.monotonic() < deadline, "the cut-off node was never marked dead"
            time.sleep(0.1)
    """)
    done = subprocess.run(
        ["ip", "netns", "exec", ns_head, sys.executable, "-c", watcher],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "heartbeat" in done.stdout
    # Wired again, the node hears that it was declared dead, and exits.
    assert _ip("-n", ns_node, "link", "set", veth_node, "up").returncode == 0
    assert far["popen"].wait(timeout=60) == 1  # 1: it ended because it was declared dead
