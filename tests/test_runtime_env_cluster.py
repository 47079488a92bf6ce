"""runtime_env on running clusters: env_vars, working_dir, py_modules, excludes and pip (a local
wheel, no network), for tasks and actors, per job and per call, inherited by child tasks, on a
second node, in workers of their own; setup failures as RuntimeEnvSetupError."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import sys
import zipfile

import pytest

import actorflow
from actorflow.exceptions import RuntimeEnvSetupError

pytestmark = pytest.mark.timeout(120)


@actorflow.remote
def env_of(*names: str) -> dict:
    return {name: os.environ.get(name) for name in names}


@actorflow.remote
def where() -> dict:
    return {
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "mark": os.environ.get("RENV_MARK"),
        "runtime_env": dict(actorflow.get_runtime_context().runtime_env),
    }


@actorflow.remote
def read_and_import(module: str, file: str) -> dict:
    imported = __import__(module)
    with open(file) as f:
        text = f.read()
    return {"value": imported.VALUE, "text": text, "cwd": os.getcwd(), "file": imported.__file__}


@actorflow.remote
def child_env(override: dict | None) -> dict:
    task = env_of.options(runtime_env=override) if override else env_of
    return actorflow.get(task.remote("A", "B", "C"))


@actorflow.remote
class EnvActor:
    def env(self, *names: str) -> dict:
        return {name: os.environ.get(name) for name in names}

    def read_and_import(self, module: str, file: str) -> dict:
        imported = __import__(module)
        with open(file) as f:
            return {"value": imported.VALUE, "text": f.read(), "cwd": os.getcwd()}


def node_cache(info: dict) -> str:
    return os.path.join(info["session_dir"], "runtime_resources", info["node_id"])


def make_project(root, value: int = 7) -> str:
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    with open(os.path.join(root, "renv_mod.py"), "w") as f:
        f.write(f"VALUE = {value}\n")
    with open(os.path.join(root, "data", "hello.txt"), "w") as f:
        f.write("Hello World!")
    with open(os.path.join(root, "debug.log"), "w") as f:
        f.write("left out")
    return str(root)


def write_wheel(directory, name: str = "renvtinypkg", version: str = "1.0") -> str:
    """A pure-Python wheel, written by hand (no build tools, no network)."""
    files = {
        f"{name}/__init__.py": f"VALUE = 'from the wheel {version}'\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(directory, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in files.items():
            wheel.writestr(member, text)
    return path


def test_env_vars_per_job_overridden_and_merged_per_task_and_actor(make_cluster):
    job_env = {"env_vars": {"A": "job", "B": "job"}}
    make_cluster(num_cpus=2, runtime_env=job_env)
    assert actorflow.get_runtime_context().runtime_env == job_env
    assert actorflow.get(env_of.remote("A", "B", "C"), timeout=60) == {
        "A": "job",
        "B": "job",
        "C": None,
    }
    override = {"env_vars": {"B": "task", "C": "c"}}
    merged = {"A": "job", "B": "task", "C": "c"}
    assert actorflow.get(env_of.options(runtime_env=override).remote("A", "B", "C")) == merged
    actor = EnvActor.options(runtime_env=override).remote()
    assert actorflow.get(actor.env.remote("A", "B", "C"), timeout=60) == merged
    plain_actor = EnvActor.remote()
    assert actorflow.get(plain_actor.env.remote("A", "B"), timeout=60) == {"A": "job", "B": "job"}
    # A child task inherits its parent's env; its own override merges onto it.
    assert actorflow.get(child_env.options(runtime_env=override).remote(None)) == merged
    deeper = {"env_vars": {"C": "child"}}
    assert actorflow.get(child_env.options(runtime_env=override).remote(deeper)) == {
        **merged,
        "C": "child",
    }
    seen = actorflow.get(where.options(runtime_env=override).remote())["runtime_env"]
    assert seen == {"env_vars": merged}


def test_workers_are_never_shared_between_envs(cluster):
    a = where.options(runtime_env={"env_vars": {"RENV_MARK": "a"}})
    b = where.options(runtime_env={"env_vars": {"RENV_MARK": "b"}})
    rounds = [actorflow.get([a.remote(), b.remote(), where.remote()], timeout=60) for _ in range(4)]
    pids: dict = {"a": set(), "b": set(), None: set()}
    for row in rounds:
        for seen in row:
            pids[seen["mark"]].add(seen["pid"])
    assert not (pids["a"] & pids["b"]) and not (pids["a"] & pids[None])
    assert not (pids["b"] & pids[None])
    assert all(pids.values())


def test_variables_read_at_interpreter_start_take_effect(cluster):
    @actorflow.remote(runtime_env={"env_vars": {"PYTHONDONTWRITEBYTECODE": "1"}})
    def flag() -> int:
        return sys.flags.dont_write_bytecode

    assert actorflow.get(flag.remote(), timeout=60) == 1  # a fresh process, not a fork


def test_working_dir_for_tasks_and_actors_with_excludes(cluster, tmp_path):
    project = make_project(tmp_path / "project")
    env = {"working_dir": project, "excludes": ["*.log"]}
    task = read_and_import.options(runtime_env=env)
    got = actorflow.get(task.remote("renv_mod", "data/hello.txt"), timeout=60)
    assert got["value"] == 7 and got["text"] == "Hello World!"
    cache = node_cache(cluster)
    assert got["cwd"].startswith(os.path.join(cache, "packages")) and got["cwd"] != project
    assert os.path.isfile(os.path.join(got["cwd"], "data", "hello.txt"))
    assert not os.path.exists(os.path.join(got["cwd"], "debug.log"))  # excluded
    actor = EnvActor.options(runtime_env=env).remote()
    from_actor = actorflow.get(actor.read_and_import.remote("renv_mod", "data/hello.txt"))
    assert from_actor == {"value": 7, "text": "Hello World!", "cwd": got["cwd"]}  # unpacked once
    uri = actorflow.get(where.options(runtime_env=env).remote())["runtime_env"]["working_dir"]
    assert uri.startswith("gcs://_actorflow_pkg_") and uri.endswith(".zip")
    # A changed folder is a new package.
    make_project(tmp_path / "project", value=8)
    changed = read_and_import.options(runtime_env=env).remote("renv_mod", "data/hello.txt")
    assert actorflow.get(changed, timeout=60)["value"] == 8


def test_working_dir_from_a_zip_file_and_py_modules(cluster, tmp_path):
    project = make_project(tmp_path / "zipped")
    archive = shutil.make_archive(str(tmp_path / "zipped_pkg"), "zip", tmp_path, "zipped")
    got = actorflow.get(
        read_and_import.options(runtime_env={"working_dir": archive}).remote(
            "renv_mod", "data/hello.txt"
        ),
        timeout=60,
    )
    assert got["text"] == "Hello World!" and got["cwd"].endswith("zipped")  # its one top folder
    assert project != got["cwd"]
    lib = tmp_path / "lib" / "renv_pkgmod"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("VALUE = 'module'\n")
    single = tmp_path / "single" / "renv_single.py"
    single.parent.mkdir()
    single.write_text("VALUE = 'single'\n")

    @actorflow.remote(runtime_env={"py_modules": [str(lib), str(single)]})
    def use_modules() -> list:
        import renv_pkgmod
        import renv_single

        return [renv_pkgmod.VALUE, renv_single.VALUE, renv_pkgmod.__file__]

    pkg_value, single_value, path = actorflow.get(use_modules.remote(), timeout=60)
    assert (pkg_value, single_value) == ("module", "single")
    assert path.startswith(node_cache(cluster))


def test_job_working_dir_is_uploaded_at_init(make_cluster, tmp_path):
    # Ray's docs example: the job's working_dir is the cwd of its tasks and actors.
    project = make_project(tmp_path / "job")
    make_cluster(num_cpus=1, runtime_env={"working_dir": project})
    shutil.rmtree(project)  # what the workers read is the uploaded copy

    @actorflow.remote
    def f():
        return open("data/hello.txt").read()

    assert actorflow.get(f.remote(), timeout=60) == "Hello World!"
    actor = EnvActor.remote()
    assert actorflow.get(actor.read_and_import.remote("renv_mod", "data/hello.txt"))["value"] == 7


def test_missing_working_dir_fails_at_the_call(cluster, tmp_path):
    with pytest.raises(ValueError, match="working_dir.*does not exist"):
        where.options(runtime_env={"working_dir": str(tmp_path / "absent")}).remote()
    with pytest.raises(ValueError, match="py_modules.*does not exist"):
        EnvActor.options(runtime_env={"py_modules": [str(tmp_path / "absent")]}).remote()


def test_working_dir_reaches_a_second_node(local_cluster, tmp_path, poll_until):
    local_cluster.add_node(num_cpus=1)
    far = local_cluster.add_node(num_cpus=1, resources={"far": 1})
    project = make_project(tmp_path / "remote_project")
    actorflow.init(address=local_cluster.address, runtime_env={"working_dir": project})
    shutil.rmtree(project)  # only the copy uploaded at init is left
    # eager_install (the default): every node fetches the job's package before work asks.
    packages = os.path.join(node_cache(far), "packages")
    poll_until(lambda: os.path.isdir(packages) and os.listdir(packages), timeout=30)

    @actorflow.remote(resources={"far": 0.5})
    def on_far() -> dict:
        return {
            "node": actorflow.get_runtime_context().get_node_id(),
            "text": open("data/hello.txt").read(),
            "cwd": os.getcwd(),
        }

    got = actorflow.get(on_far.remote(), timeout=60)
    assert got["node"] == far["node_id"] and got["text"] == "Hello World!"
    assert got["cwd"].startswith(node_cache(far))  # the far node's own cached copy
    actor = EnvActor.options(resources={"far": 0.5}).remote()
    from_actor = actorflow.get(actor.read_and_import.remote("renv_mod", "data/hello.txt"))
    assert from_actor["cwd"] == got["cwd"] and from_actor["value"] == 7


def test_pip_installs_a_local_wheel_into_a_cached_virtualenv(cluster, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    write_wheel(str(wheels))
    env = {"pip": ["--no-index", f"--find-links {wheels}", "renvtinypkg==1.0"]}

    @actorflow.remote(runtime_env=env)
    def use_wheel() -> list:
        import renvtinypkg

        return [renvtinypkg.VALUE, sys.prefix, actorflow.__file__]

    value, prefix, _ = actorflow.get(use_wheel.remote(), timeout=90)
    assert value == "from the wheel 1.0"
    pip_cache = os.path.join(node_cache(cluster), "pip")
    assert prefix.startswith(pip_cache)  # the worker runs the env's own Python
    ready = os.path.join(prefix, ".actorflow-ready")
    built_at = os.stat(ready).st_mtime_ns

    @actorflow.remote(runtime_env=env)
    class WheelActor:
        def prefix(self) -> str:
            import renvtinypkg  # noqa: F401

            return sys.prefix

    assert actorflow.get(WheelActor.remote().prefix.remote(), timeout=60) == prefix
    assert os.stat(ready).st_mtime_ns == built_at  # built once, reused
    built = [
        d for d in os.listdir(pip_cache) if os.path.exists(f"{pip_cache}/{d}/.actorflow-ready")
    ]
    assert len(built) == 1

    @actorflow.remote
    def outside() -> bool:
        try:
            import renvtinypkg  # noqa: F401
        except ImportError:
            return False
        return True

    assert actorflow.get(outside.remote(), timeout=60) is False  # only in that env


def test_failing_pip_install_is_a_runtime_env_setup_error(cluster):
    env = {"pip": ["--no-index", "renv-no-such-package-anywhere"]}
    with pytest.raises(RuntimeEnvSetupError, match="pip install.*failed"):
        actorflow.get(where.options(runtime_env=env).remote(), timeout=90)
    actor = EnvActor.options(runtime_env=env).remote()
    with pytest.raises(RuntimeEnvSetupError, match="runtime_env could not be set up"):
        actorflow.get(actor.env.remote("A"), timeout=90)
    # The node keeps serving other work.
    assert actorflow.get(where.remote(), timeout=60)["mark"] is None


def test_setup_timeout_is_a_runtime_env_setup_error(cluster):
    silent = socket.socket()  # accepts connections, never answers: pip waits on it
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        index = f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
        env = {
            "pip": [f"--index-url {index}", "renv-slow-package"],
            "config": {"setup_timeout_seconds": 2},
        }
        with pytest.raises(RuntimeEnvSetupError, match="timed out after 2 s"):
            actorflow.get(where.options(runtime_env=env).remote(), timeout=60)
    finally:
        silent.close()


def _mark_setup():
    os.environ["SETUP_HOOK_RAN"] = str(os.getpid())


def test_worker_process_setup_hook_runs_in_every_worker_first(make_cluster):
    make_cluster(num_cpus=2, runtime_env={"worker_process_setup_hook": _mark_setup})

    @actorflow.remote
    def seen():
        return os.environ.get("SETUP_HOOK_RAN"), str(os.getpid())

    @actorflow.remote
    class Seen:
        def seen(self):
            return os.environ.get("SETUP_HOOK_RAN"), str(os.getpid())

    ran, pid = actorflow.get(seen.remote(), timeout=60)
    assert ran == pid
    ran, pid = actorflow.get(Seen.remote().seen.remote(), timeout=60)
    assert ran == pid
    by_name = seen.options(runtime_env={"worker_process_setup_hook": "os.getcwd"}).remote()
    assert actorflow.get(by_name, timeout=60)[1]
    with pytest.raises(ValueError, match="module.function"):
        seen.options(runtime_env={"worker_process_setup_hook": "nodots"})
