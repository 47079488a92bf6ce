"""runtime_env without a cluster: what the fields accept, how envs merge, gitignore-style
excludes, and packing folders into content-named packages."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

import actorflow
from actorflow.runtime_env import RuntimeEnv, RuntimeEnvConfig

from actorflow._private.runtime_env import spec  # isort: skip
from actorflow._private.runtime_env.excludes import Excluder  # isort: skip
from actorflow._private.runtime_env.packaging import Packer  # isort: skip

pytestmark = pytest.mark.timeout(30)


def test_unknown_and_unsupported_fields_are_named():
    with pytest.raises(ValueError, match="unknown runtime_env field.*colour.*supported fields"):
        spec.validate({"env_vars": {}, "colour": "blue"})
    with pytest.raises(ValueError, match="conda are not supported by actorflow"):
        spec.validate({"conda": {"dependencies": ["toolz"]}})
    with pytest.raises(TypeError, match="must be a dict or a RuntimeEnv"):
        spec.validate(["pip"])


def test_env_vars_must_map_str_to_str():
    assert spec.validate({"env_vars": {"A": "1"}}) == {"env_vars": {"A": "1"}}
    with pytest.raises(TypeError, match=r"'N' -> 32 is not"):
        spec.validate({"env_vars": {"N": 32}})
    with pytest.raises(ValueError, match="not a valid variable name"):
        spec.validate({"env_vars": {"A=B": "x"}})


def test_pip_in_each_of_rays_forms(tmp_path):
    listed = spec.validate({"pip": ["requests==1.0", " emoji "]})
    assert listed["pip"] == {"packages": ["requests==1.0", "emoji"], "pip_check": False}
    as_dict = spec.validate({"pip": {"packages": ["a"], "pip_check": True, "pip_version": "==23"}})
    assert as_dict["pip"] == {"packages": ["a"], "pip_check": True, "pip_version": "==23"}
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# a comment\nalpha\n\n--no-index\nbeta>=2\n")
    from_file = spec.validate({"pip": str(requirements)})
    assert from_file["pip"]["packages"] == ["alpha", "--no-index", "beta>=2"]
    with pytest.raises(ValueError, match="cannot read requirements file"):
        spec.validate({"pip": str(tmp_path / "missing.txt")})
    with pytest.raises(ValueError, match="unknown key.*extra"):
        spec.validate({"pip": {"packages": [], "extra": 1}})
    assert spec.validate({"pip": []}) == {}  # nothing to install: no env


def test_config_and_remote_uris():
    assert spec.validate({"config": RuntimeEnvConfig(setup_timeout_seconds=5)})["config"] == {
        "setup_timeout_seconds": 5,
        "eager_install": True,
        "log_files": [],
    }
    with pytest.raises(ValueError, match="unknown runtime_env config field.*retries"):
        spec.validate({"config": {"retries": 3}})
    with pytest.raises(ValueError, match="setup_timeout_seconds must be > 0"):
        RuntimeEnvConfig(setup_timeout_seconds=0)
    with pytest.raises(ValueError, match="remote URIs .s3://. are not supported"):
        spec.validate({"working_dir": "s3://bucket/pkg.zip"})


def test_local_file_uris_name_local_paths(tmp_path):
    folder = tmp_path / "a b"
    folder.mkdir()
    for uri in (f"file://{folder}", f"file://localhost/{folder}"):
        (path,) = spec.validate({"py_modules": [uri]})["py_modules"]
        assert os.path.samefile(path, folder)
    with pytest.raises(ValueError, match="must name this machine"):
        spec.validate({"working_dir": "file://elsewhere/tmp/x"})


def test_runtime_env_class_is_a_checked_dict():
    env = RuntimeEnv(env_vars={"A": "a"}, pip=["emoji"])
    assert isinstance(env, dict)
    assert env.env_vars() == {"A": "a"}
    assert env.pip_config()["packages"] == ["emoji"]
    assert RuntimeEnv.deserialize(env.serialize()) == env
    with pytest.raises(TypeError):
        RuntimeEnv(env_vars={"A": 1})


def test_merge_follows_rays_inheritance_rule():
    parent = {"pip": {"packages": ["requests", "chess"]}, "env_vars": {"A": "a", "B": "b"}}
    child = {"pip": {"packages": ["torch"]}, "env_vars": {"B": "new", "C": "c"}}
    assert spec.merge(parent, child) == {
        "pip": {"packages": ["torch"]},
        "env_vars": {"A": "a", "B": "new", "C": "c"},
    }
    assert spec.merge(parent, None) == parent
    assert spec.merge({}, child) == child


def test_env_key_ignores_the_setup_config():
    env = {"env_vars": {"A": "a"}}
    assert spec.env_key(env) == spec.env_key({**env, "config": {"setup_timeout_seconds": 9}})
    assert spec.env_key(env) != spec.env_key({"env_vars": {"A": "b"}})
    assert spec.env_key({}) == spec.env_key({"config": {"eager_install": False}}) == ""


def test_expanding_references_to_existing_variables():
    expanded = spec.expand_env_vars(
        {"PATHS": "${BASE}:/mine", "NONE": "${MISSING}:x"}, {"BASE": "/base"}
    )
    assert expanded == {"PATHS": "/base:/mine", "NONE": ":x"}


def test_remote_options_check_the_runtime_env_where_written():
    with pytest.raises(ValueError, match="unknown runtime_env field"):

        @actorflow.remote(runtime_env={"bogus": 1})
        def f():
            return 1

    @actorflow.remote
    def g():
        return 1

    with pytest.raises(TypeError, match="env_vars must map str to str"):
        g.options(runtime_env={"env_vars": {"X": 1}})


def test_gitignore_style_excludes():
    ex = Excluder(["*.log", "/subdir/", "path/to/dir", "!keep.log", "**/cache"])
    assert ex.excluded("a.log", False) and ex.excluded("deep/b.log", False)
    assert not ex.excluded("keep.log", False)
    assert ex.excluded("subdir", True) and not ex.excluded("other/subdir", True)
    assert not ex.excluded("subdir", False)  # a trailing / matches directories only
    assert ex.excluded("path/to/dir", True) and not ex.excluded("x/path/to/dir", True)
    assert ex.excluded("a/b/cache", True) and ex.excluded("cache", True)
    assert not ex.excluded("main.py", False)


def _names(data: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())


def test_packing_is_content_named_and_honours_excludes_and_gitignore(tmp_path):
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (root / "main.py").write_text("x = 1\n")
    (root / "sub" / "data.txt").write_text("data")
    (root / "big.log").write_text("log")
    (root / "secret.env").write_text("s")
    (root / ".gitignore").write_text("secret.env\n")
    packer = Packer(max_bytes=10**6)
    first = packer.package(str(root), "working_dir", ["*.log"], keep_top=False)
    assert first.uri.startswith("gcs://_actorflow_pkg_") and first.data is not None
    assert _names(first.data) == [".gitignore", "main.py", "sub/data.txt"]
    again = Packer(max_bytes=10**6).package(str(root), "working_dir", ["*.log"], keep_top=False)
    assert again.uri == first.uri  # the same files: the same bytes, the same name
    packer.uploaded.add(first.uri)
    assert packer.package(str(root), "working_dir", ["*.log"], False).data is None  # not again
    (root / "main.py").write_text("x = 2\n")
    changed = packer.package(str(root), "working_dir", ["*.log"], keep_top=False)
    assert changed.uri != first.uri and changed.data is not None
    module = packer.package(str(root / "sub"), "py_modules", [], keep_top=True)
    assert module.data is not None and _names(module.data) == ["sub/data.txt"]


def test_packing_refuses_missing_paths_and_oversized_packages(tmp_path):
    packer = Packer(max_bytes=100)
    with pytest.raises(ValueError, match="does not exist"):
        packer.package(str(tmp_path / "nope"), "working_dir", [], False)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="must be a directory or a .zip file"):
        packer.package(str(tmp_path / "f.txt"), "working_dir", [], False)
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "blob").write_bytes(os.urandom(5000))
    with pytest.raises(ValueError, match="over the limit.*excludes"):
        packer.package(str(tmp_path / "big"), "working_dir", [], False)


def test_a_users_zip_is_named_apart_from_a_packed_folder(tmp_path):
    folder = tmp_path / "only"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "m.py").write_text("")
    archive = tmp_path / "given.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("top/m.py", "")
    packer = Packer(max_bytes=10**6)
    # A folder holding one folder stays as it is; a user's zip with one top folder is unwrapped
    # on the node (as in Ray): the two are told apart by their names.
    assert packer.package(str(folder), "working_dir", [], False).uri.startswith(
        "gcs://_actorflow_pkg_"
    )
    assert packer.package(str(archive), "working_dir", [], False).uri.startswith(
        "gcs://_actorflow_zip_"
    )
