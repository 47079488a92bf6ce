"""Errors: the exception tree, TaskError (traceback, cause, instance of the user's class),
propagation through dependencies, early failure of get on a list, and errors raised at .remote()."""

from __future__ import annotations

import os
import pickle
import threading

import pytest
from helpers import gated, touch

import actorflow
from actorflow import exceptions

pytestmark = pytest.mark.timeout(60)


class PlainError(Exception):
    pass


class SubValueError(ValueError):
    pass


class ErrorWithArgs(Exception):
    """An exception whose __init__ takes other arguments than its message (and that pickles)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code
        self.detail = detail

    def __reduce__(self):
        return (ErrorWithArgs, (self.code, self.detail))


class NotRebuildableError(Exception):
    """Pickles, but unpickling calls __init__ with the message only and fails (a common
    mistake in user code)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")


class UnpicklableError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def inner_helper(message: str):
    raise SubValueError(message)


@actorflow.remote
def raise_value_error(message):
    inner_helper(message)


@actorflow.remote
def raise_error(error):
    raise error


@actorflow.remote
def raise_error_with_args():
    raise ErrorWithArgs(7, "seven")


@actorflow.remote
def raise_not_rebuildable():
    raise NotRebuildableError(8, "eight")


@actorflow.remote
def raise_early(message):
    raise SubValueError(message)


@actorflow.remote
def raise_unpicklable():
    raise UnpicklableError("holds a lock")


@actorflow.remote
def add(a, b):
    return a + b


@actorflow.remote
def record_and_add(path, a, b=0):
    touch(path)
    return a + b


@actorflow.remote
def return_unpicklable():
    return threading.Lock()


@actorflow.remote
def crash():
    os._exit(3)


# -- the tree -----------------------------------------------------------------------------------


def test_every_exception_is_an_actorflow_error():
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.ActorflowError), name


def test_exception_tree_extras():
    assert issubclass(exceptions.GetTimeoutError, TimeoutError)
    assert issubclass(exceptions.SerializationError, TypeError)
    assert issubclass(exceptions.OwnerDiedError, exceptions.ObjectLostError)
    assert issubclass(exceptions.AsyncioContextError, RuntimeError)
    assert issubclass(exceptions.ActorflowError, Exception)


def test_ray_aliases():
    assert exceptions.RayError is exceptions.ActorflowError
    assert exceptions.RayTaskError is exceptions.TaskError
    assert issubclass(exceptions.ActorDiedError, exceptions.RayActorError)
    assert issubclass(exceptions.RaySystemError, exceptions.ActorflowError)


def test_public_names_are_exported():
    for name in actorflow.__all__:
        assert hasattr(actorflow, name), name


# -- TaskError ----------------------------------------------------------------------------------


def test_task_error_carries_traceback_cause_and_class(cluster):
    ref = raise_value_error.remote("boom-123")
    with pytest.raises(exceptions.TaskError) as info:
        actorflow.get(ref, timeout=30)
    err = info.value
    # Also an instance of the user's class: `except ValueError` catches it.
    assert isinstance(err, SubValueError) and isinstance(err, ValueError)
    assert isinstance(err.cause, SubValueError)
    assert err.cause.args == ("boom-123",)
    # The remote traceback, with the user's frames, is in the message.
    text = str(err)
    assert "raise_value_error" in text
    assert "inner_helper" in text
    assert "SubValueError: boom-123" in text
    assert "Traceback" in text
    assert err.pid is not None and err.pid != os.getpid()


def test_except_the_users_class(cluster):
    try:
        actorflow.get(raise_error.remote(KeyError("missing")), timeout=30)
    except KeyError as err:
        assert isinstance(err, exceptions.RayTaskError)
        assert err.cause.args == ("missing",)
    else:
        pytest.fail("no error")


def test_plain_user_exception(cluster):
    with pytest.raises(PlainError):
        actorflow.get(raise_error.remote(PlainError("plain")), timeout=30)


def test_exception_with_custom_init_keeps_its_cause(cluster):
    with pytest.raises(exceptions.TaskError) as info:
        actorflow.get(raise_error_with_args.remote(), timeout=30)
    assert isinstance(info.value.cause, ErrorWithArgs)
    assert info.value.cause.code == 7
    assert "code 7: seven" in str(info.value)


def test_exception_with_custom_init_is_an_instance_of_its_class(cluster):
    with pytest.raises(ErrorWithArgs):
        actorflow.get(raise_error_with_args.remote(), timeout=30)


def test_unpicklable_exception_still_gives_a_task_error(cluster):
    with pytest.raises(exceptions.TaskError) as info:
        actorflow.get(raise_unpicklable.remote(), timeout=30)
    assert "holds a lock" in str(info.value)


def test_exception_that_cannot_be_rebuilt_gives_a_task_error(cluster):
    with pytest.raises(exceptions.TaskError, match="code 8: eight"):
        actorflow.get(raise_not_rebuildable.remote(), timeout=30)


def test_unpicklable_exception_does_not_hang(cluster):
    with pytest.raises(exceptions.ActorflowError, match="holds a lock"):
        actorflow.get(raise_unpicklable.remote(), timeout=30)


def test_unpicklable_return_value(cluster):
    with pytest.raises(exceptions.ActorflowError, match="(?i)lock"):
        actorflow.get(return_unpicklable.remote(), timeout=30)


def test_task_error_pickles():
    err = exceptions.TaskError("fn", "Traceback...\nValueError: x", ValueError("x"), 12, "ip")
    back = pickle.loads(pickle.dumps(err.as_instanceof_cause()))
    assert isinstance(back, exceptions.TaskError)
    assert back.function_name == "fn" and back.pid == 12
    assert isinstance(back.cause, ValueError)
    assert "ValueError: x" in str(back)


# -- propagation --------------------------------------------------------------------------------


def test_error_propagates_through_dependencies(cluster, tmp_path):
    failed = raise_value_error.remote("upstream")
    downstream = record_and_add.remote(str(tmp_path / "ran"), failed, 1)
    further = add.remote(downstream, 1)
    for ref in (downstream, further):
        with pytest.raises(exceptions.TaskError) as info:
            actorflow.get(ref, timeout=30)
        # The same error as the failed dependency's, not a new one.
        assert info.value.function_name == "raise_value_error"
        assert isinstance(info.value, SubValueError)
        assert "upstream" in str(info.value)
    # The dependent task never ran.
    assert not (tmp_path / "ran").exists()


def test_error_propagates_through_a_keyword_dependency(cluster, tmp_path):
    ref = record_and_add.remote(str(tmp_path / "ran"), 1, b=raise_value_error.remote("kw"))
    with pytest.raises(SubValueError, match="kw"):
        actorflow.get(ref, timeout=30)
    assert not (tmp_path / "ran").exists()


def test_get_on_a_list_raises_as_soon_as_one_fails(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    still_running = gated.remote(gate, "late")
    failing = raise_early.remote("early")
    # The gate is closed: if get waited for every element, this would time out instead.
    with pytest.raises(SubValueError, match="early"):
        actorflow.get([still_running, failing], timeout=30)
    ready, _ = actorflow.wait([still_running], timeout=0)
    assert ready == []
    touch(gate)
    assert actorflow.get(still_running, timeout=30) == "late"


def test_worker_crash_without_retries(cluster):
    with pytest.raises(exceptions.WorkerCrashedError, match="crash"):
        actorflow.get(crash.options(max_retries=0).remote(), timeout=30)


# -- errors at .remote() ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((), {}),
        ((1, 2, 3), {}),
        ((1,), {"c": 3}),
        ((1, 2), {"a": 1}),
    ],
)
def test_wrong_arity_fails_at_remote(cluster, args, kwargs):
    with pytest.raises(TypeError) as info:
        add.remote(*args, **kwargs)
    assert "add" in str(info.value)


def test_unpicklable_argument_fails_at_remote_naming_it(cluster):
    with pytest.raises(exceptions.SerializationError) as info:
        add.remote(1, threading.Lock())
    assert isinstance(info.value, TypeError)
    assert "argument 1" in str(info.value)
    assert "add" in str(info.value)
    with pytest.raises(exceptions.SerializationError, match="'b'"):
        add.remote(1, b=threading.Lock())
    # Nothing was submitted, and the cluster keeps working.
    assert actorflow.get(add.remote(1, 2), timeout=30) == 3


def test_every_user_facing_error_is_in_the_one_tree():
    # Errors raised by the CLI, the launcher, the runtime and supervision are caught as
    # ActorflowError, and their tracebacks and pickles name actorflow.exceptions.
    from actorflow import exceptions, supervision

    for name in (
        "ClusterNotFoundError",
        "NodeStartError",
        "NoTokenError",
        "ChildStartError",
        "PeerUnreachableError",
        "RemoteError",
        "MalformedMessageError",
    ):
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.ActorflowError), name
        assert cls.__module__ == "actorflow.exceptions", name
    assert issubclass(exceptions.NoTokenError, exceptions.AuthenticationError)
    assert supervision.ChildStartError is exceptions.ChildStartError
    error = pickle.loads(pickle.dumps(exceptions.ChildStartError("db", "boom")))
    assert (error.child, error.cause, str(error)) == (
        "db",
        "boom",
        "child 'db' did not start: boom",
    )
