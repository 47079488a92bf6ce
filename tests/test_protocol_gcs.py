"""The control store's typed messages (protocol/gcs.py, protocol/actors.py): each round-trips as
the msgpack array its handler reads, and a malformed one sent to a live GCS gets a
MalformedMessageError naming the message and the field, after which the cluster keeps working."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

import actorflow
from actorflow import exceptions
from actorflow._private.protocol import actors, gcs
from actorflow._private.protocol.message import SPECS, decode, spec_of
from actorflow._private.worker import context

pytestmark = pytest.mark.timeout(60)

ACTOR = "a" * 32
ADDRESS = "tcp://127.0.0.1:1"

# One instance of every message to "gcs" and "actors", each field set.
SAMPLES: list[Any] = [
    gcs.RegisterNode("n" * 16, ADDRESS, {"CPU": 4.0}, {"host": "127.0.0.1", "pid": 7}),
    gcs.Heartbeat("n" * 16, {"CPU": 2.5}, 3),
    gcs.Heartbeat(
        "n" * 16,
        {"CPU": 0.0},
        1,
        {"demand": [{"shape": {"CPU": 1.0}, "count": 1, "kind": "task"}], "busy": {}},
    ),
    gcs.DrainNode("n" * 16, "the node process got SIGTERM"),
    gcs.WaitNodeDeaths(2),
    gcs.RegisterJob(ADDRESS, "ns", {"sys_path": ["/x"], "log_address": ADDRESS}),
    gcs.JobInfo("00000001"),
    gcs.KvPut("ns", b"k", b"v", True),
    gcs.KvGet("ns", b"k"),
    gcs.KvDel("ns", b"k"),
    gcs.KvKeys("ns", b"pre"),
    actors.CreateActor({"actor_id": ACTOR, "class_name": "C", "meta": {"is_async": False}}),
    actors.ActorWorkerExited("w" * 16, -9),
    actors.ActorExited(ACTOR, "exit_actor() was called"),
    actors.KillActor(ACTOR, True, "because"),
    actors.WaitActor(ACTOR, 3, False),
    actors.WatchActor(ACTOR, -1),
    actors.GetNamedActor("name", "ns"),
    actors.ListNamedActors(True, "ns"),
]


def test_every_gcs_and_actors_message_has_a_sample():
    declared = {kind for kind, spec in SPECS.items() if spec.target in ("gcs", "actors")}
    assert declared == {type(sample) for sample in SAMPLES}
    assert spec_of(actors.WaitActor).method == "wait_actor"
    assert spec_of(gcs.Heartbeat).target == "gcs"


@pytest.mark.parametrize("sent", SAMPLES, ids=lambda m: type(m).__name__)
def test_a_message_travels_as_a_plain_array_and_decodes_back(sent):
    wire = msgpack.unpackb(msgpack.packb(sent, use_bin_type=True))
    assert isinstance(wire, list) and len(wire) == len(sent)
    assert decode(type(sent), wire) == sent


def test_todays_positional_lists_still_decode():
    """The wire is what senders sent before the messages were typed (optional fields last)."""
    assert decode(gcs.RegisterJob, [ADDRESS, "ns"]).config is None
    assert decode(actors.KillActor, [ACTOR, False]).reason == actors.KILLED_REASON
    assert decode(actors.WaitActor, [ACTOR, 0]).settled is True
    assert decode(actors.ActorWorkerExited, ["w", None]).exit_code is None
    assert decode(actors.GetNamedActor, ["x", None]).namespace is None


def test_replies_are_plain_arrays_too():
    state = actors.ActorState(2, "ALIVE", ADDRESS, "", None)
    wire = msgpack.unpackb(msgpack.packb(state, use_bin_type=True))
    assert wire == [2, "ALIVE", ADDRESS, "", None]
    assert actors.ActorState(*wire) == state
    peer = gcs.PeerNode("n", ADDRESS, {"CPU": 1.0}, {"CPU": 0.5})
    assert msgpack.unpackb(msgpack.packb(peer)) == ["n", ADDRESS, {"CPU": 1.0}, {"CPU": 0.5}]


@pytest.mark.parametrize(
    ("kind", "payload", "says"),
    [
        (
            gcs.Heartbeat,
            ["n", {"CPU": 1.0}],
            "must be an array [node_id, available, queued, report]",
        ),
        (gcs.KvGet, ["ns", "not bytes"], "field key must be bytes, got str 'not bytes'"),
        (gcs.RegisterNode, {"node_id": "n"}, "got dict"),
        (actors.WaitActor, [ACTOR, "1"], "field known_version must be int, got str '1'"),
        (actors.CreateActor, [[1, 2]], "field spec must be map, got an array of 2"),
        (actors.KillActor, [ACTOR, True, None], "field reason must be str, got nil"),
    ],
)
def test_a_malformed_payload_names_the_message_and_field(kind, payload, says):
    with pytest.raises(exceptions.MalformedMessageError) as caught:
        decode(kind, payload)
    assert spec_of(kind).describe() in str(caught.value)
    assert says in str(caught.value)


@actorflow.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n


def test_a_live_gcs_answers_a_malformed_message_with_a_clear_error(cluster):
    core_worker = context.core_or_none()
    gcs_address = core_worker.gcs_address

    async def ask(target: str, method: str, payload: Any) -> Any:
        return await core_worker.runtime.request(gcs_address, target, method, payload)

    def send(target: str, method: str, payload: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(
            ask(target, method, payload), core_worker.runtime.loop
        ).result(30)

    cases = [
        ("gcs", "heartbeat", ["n" * 16, {"CPU": 1.0}], "heartbeat message to 'gcs'"),
        ("gcs", "kv_put", ["ns", "key", b"v", True], "field key must be bytes"),
        ("gcs", "wait_node_deaths", ["0"], "field known must be int"),
        ("gcs", "register_job", [ADDRESS], "register_job message to 'gcs'"),
        ("actors", "wait_actor", [ACTOR, None], "field known_version must be int"),
        ("actors", "create_actor", [None], "field spec must be map"),
        ("actors", "get_named_actor", [7, "ns"], "field name must be str"),
    ]
    for target, method, payload, says in cases:
        with pytest.raises(exceptions.MalformedMessageError, match=rf"{method} message to"):
            send(target, method, payload)
        with pytest.raises(exceptions.MalformedMessageError, match=says):
            send(target, method, payload)
    # A well-formed message still works, through the typed message and as a plain list.
    assert send("gcs", "kv_put", gcs.KvPut("test-protocol", b"k", b"v", True)) is True
    assert send("gcs", "kv_get", ["test-protocol", b"k"]) == b"v"
    assert send("gcs", "kv_keys", gcs.KvKeys("test-protocol", b"")) == [b"k"]
    assert send("gcs", "kv_del", gcs.KvDel("test-protocol", b"k")) is True
    # Nothing was lost: the GCS still creates actors, names them and answers node queries.
    counter = Counter.options(name="protocol-gcs-counter").remote()
    assert actorflow.get(counter.bump.remote()) == 1
    assert actorflow.get(actorflow.get_actor("protocol-gcs-counter").bump.remote()) == 2
    assert "protocol-gcs-counter" in actorflow.list_named_actors()
    assert any(node["Alive"] for node in actorflow.nodes())
    actorflow.kill(counter)
