"""A worker starts from one WorkerSpec: it survives the trip through bytes, a malformed one fails
with an error that names the problem, and the token in it reaches the worker through a private
file, never a command line or an environment (spawned and forked workers alike)."""

from __future__ import annotations

import os
import stat

import msgpack
import pytest
from helpers import poll_until

import actorflow
from actorflow._private.config import Config
from actorflow._private.protocol.worker_spec import MalformedWorkerSpecError, WorkerSpec
from actorflow._private.worker import context

pytestmark = pytest.mark.timeout(60)


def _spec(**changes) -> WorkerSpec:
    spec = WorkerSpec(
        node_id="ab" * 8,
        node_host="10.0.0.7",
        raylet_address="tcp://10.0.0.7:4000",
        gcs_address="tcp://10.0.0.1:6379",
        session_dir="/tmp/actorflow-sessions/session_x",
        shm_prefix="af_abc",
        spill_dir="/tmp/actorflow-sessions/session_x/spill",
        segment_socket="/tmp/actorflow-sessions/session_x/store-abababab.sock",
        token=bytes(range(32)),
        config=Config(pipeline_depth=3, lease_idle_seconds=0.25, use_forkserver=False),
        worker_id="cd" * 8,
        parent_pid=1234,
        job_id="01000000",
        namespace="ns",
        log_address="tcp://127.0.0.1:5000",
        sys_path=("/home/me/project", "/opt/lib"),
    )
    return spec.replace(**changes)


def _encoded(**spec_changes) -> bytes:
    message = msgpack.unpackb(_spec().to_bytes())
    message["spec"].update(spec_changes)
    return msgpack.packb(message)


def test_round_trip_keeps_every_field():
    spec = _spec()
    again = WorkerSpec.from_bytes(spec.to_bytes())
    assert again == spec
    assert isinstance(again.sys_path, tuple) and isinstance(again.config, Config)


def test_the_token_stays_out_of_the_repr():
    assert bytes(range(32)).hex() not in repr(_spec()) and "token" not in repr(_spec())


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\xc1 not msgpack", "not msgpack"),
        (msgpack.packb([1, 2]), "expected a map"),
        (msgpack.packb({"version": 99, "spec": {}}), "version 99"),
        (_encoded(worker_id=7), "worker_id should be str, got int"),
        (_encoded(token="secret"), "token should be bytes, got str"),
        (_encoded(parent_pid=True), "parent_pid should be int, got bool"),
        (_encoded(sys_path=["/ok", 3]), "sys_path holds a non-str"),
        (_encoded(colour="blue"), "unknown field(s) colour"),
        (_encoded(config={"pipeline_depth": "3"}), "Config.pipeline_depth should be int"),
        (_encoded(config={"no_such_knob": 1}), "unknown Config field(s) no_such_knob"),
    ],
)
def test_a_malformed_spec_names_the_problem(data, problem):
    with pytest.raises(MalformedWorkerSpecError, match="malformed worker spec") as raised:
        WorkerSpec.from_bytes(data)
    assert problem in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_missing_field_is_named():
    message = msgpack.unpackb(_spec().to_bytes())
    del message["spec"]["raylet_address"], message["spec"]["token"]
    with pytest.raises(MalformedWorkerSpecError, match="missing field.*raylet_address, token"):
        WorkerSpec.from_bytes(msgpack.packb(message))


def test_the_spec_file_is_private_and_gone_once_read(tmp_path):
    path = str(tmp_path / "w.spec")
    _spec().write(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert WorkerSpec.consume(path) == _spec()
    assert not os.path.exists(path)


def test_a_malformed_spec_file_is_unlinked_too(tmp_path):
    path = tmp_path / "w.spec"
    path.write_bytes(b"\xc1")
    with pytest.raises(MalformedWorkerSpecError):
        WorkerSpec.consume(str(path))
    assert not path.exists()


# -- started workers -------------------------------------------------------------------------------


@actorflow.remote
def my_pid() -> int:
    return os.getpid()


@actorflow.remote
class PidActor:
    def pid(self) -> int:
        return os.getpid()


@pytest.mark.parametrize("forkserver", ["1", "0"])
def test_the_token_is_not_on_a_workers_command_line_or_in_its_environment(
    make_cluster, monkeypatch, forkserver
):
    monkeypatch.setenv("ACTORFLOW_USE_FORKSERVER", forkserver)
    make_cluster(num_cpus=1)
    session = context.session()
    token = session.token.hex()
    actor = PidActor.remote()
    pids = {actorflow.get(my_pid.remote(), timeout=30), actorflow.get(actor.pid.remote())}
    assert os.getpid() not in pids
    for pid in pids:
        for what in ("cmdline", "environ"):
            with open(f"/proc/{pid}/{what}", "rb") as f:
                seen = f.read().decode(errors="replace")
            assert token not in seen and token.upper() not in seen, (pid, what)
    # Each worker unlinks its spec file once it has read it (some may still be starting).
    specs = os.path.join(session.session_dir, "worker-specs")
    poll_until(lambda: os.listdir(specs) == [], message="a worker's spec file was left behind")
