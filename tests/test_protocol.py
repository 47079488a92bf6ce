"""The typed wire protocol: every message round-trips as a msgpack array, and a malformed payload
gets a MalformedMessageError that names the message and the field, from a live process too."""

from __future__ import annotations

import asyncio

import msgpack
import pytest

import actorflow
from actorflow import exceptions
from actorflow._private.protocol import core, worker
from actorflow._private.protocol.message import SPECS, decode, spec_of
from actorflow._private.worker import context

pytestmark = pytest.mark.timeout(60)


def test_every_message_names_a_distinct_handler():
    routes = [(spec.target, spec.method) for spec in SPECS.values()]
    assert len(routes) == len(set(routes))
    assert spec_of(core.BorrowObjects).method == "borrow_objects"


def test_a_message_travels_as_a_plain_array_and_decodes_back():
    sent = worker.PushTask(b"t" * 16, b"f" * 16, None, "f", [0, [[], {}]], [], 1, "tcp://x:1")
    wire = msgpack.unpackb(msgpack.packb(sent, use_bin_type=True))
    assert isinstance(wire, list) and len(wire) == 10  # gpu_ids and placement_group too
    assert decode(worker.PushTask, wire) == sent


def test_a_trailing_optional_field_may_be_left_off():
    decoded = decode(worker.BecomeActor, ["a" * 32, {"class_name": "C"}, 0, "tcp://x:1"])
    assert decoded.gpu_ids is None


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ([b"x"], "must be an array [obj_ids, borrower], got an array of 1"),
        ("junk", "must be an array [obj_ids, borrower], got str 'junk'"),
        ([b"x", "tcp://b:1"], "field obj_ids must be array, got bytes"),
        ([[b"x"], 7], "field borrower must be str, got int 7"),
        ([[b"x"], "b", "extra"], "got an array of 3"),
    ],
)
def test_a_malformed_payload_names_the_message_and_field(payload, says):
    with pytest.raises(exceptions.MalformedMessageError) as caught:
        decode(core.BorrowObjects, payload)
    assert "borrow_objects message to 'core'" in str(caught.value)
    assert says in str(caught.value)


@actorflow.remote
class Where:
    def address(self):
        return context.core_or_none().address


def test_a_live_worker_answers_a_malformed_message_with_a_clear_error(cluster):
    core_worker = context.core_or_none()
    actor_address = actorflow.get(Where.remote().address.remote())

    def send(address, target, method, payload):
        return asyncio.run_coroutine_threadsafe(
            _request(core_worker, address, target, method, payload), core_worker.runtime.loop
        ).result(30)

    with pytest.raises(exceptions.MalformedMessageError, match="call message to 'actor'"):
        send(actor_address, "actor", "call", [b"t" * 16, "address"])
    with pytest.raises(exceptions.MalformedMessageError, match="field task_id must be bytes"):
        send(actor_address, "worker", "cancel_task", ["not bytes", False, True])
    with pytest.raises(exceptions.MalformedMessageError, match="get_object message to 'core'"):
        send(core_worker.address, "core", "get_object", [])
    # Nothing was lost: the actor and the driver still work.
    handle = Where.remote()
    assert actorflow.get(handle.address.remote()).startswith("tcp://")
    assert actorflow.get(actorflow.put(5)) == 5


def test_the_node_answers_malformed_lease_and_store_messages_clearly(cluster):
    """The raylet and store of the driver's node (on the driver's runtime in init()'s cluster)."""
    core_worker = context.core_or_none()
    raylet = core_worker.raylet_address

    def send(target, method, payload):
        future = asyncio.run_coroutine_threadsafe(
            _request(core_worker, raylet, target, method, payload), core_worker.runtime.loop
        )
        return future.result(30)

    with pytest.raises(exceptions.MalformedMessageError, match="field resources must be map"):
        send("raylet", "request_lease", [["CPU", 1], False])
    with pytest.raises(exceptions.MalformedMessageError, match="return_lease message"):
        send("raylet", "return_lease", ["lease"])
    with pytest.raises(exceptions.MalformedMessageError, match="field nbytes must be int"):
        send("store", "create", [b"o" * 20, "big", "tcp://a:1", "tcp://a:1"])
    with pytest.raises(exceptions.MalformedMessageError, match="read_chunk message to 'store'"):
        send("store", "read_chunk", [b"o" * 20])
    # Tasks still get leases and large values still go through the store.
    assert actorflow.get(_double.remote(21)) == 42
    assert len(actorflow.get(actorflow.put(b"x" * (1 << 20)))) == 1 << 20


async def _request(core_worker, address, target, method, payload):
    return await core_worker.runtime.request(address, target, method, payload)


@actorflow.remote
def _double(x):
    return 2 * x
