"""Typed handles and refs (issue 18): mypy, with actorflow's plugin, on tests/typing_example.py
reveals the types its comments say and reports the errors they mark."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "typing_example.py"
CONFIG = """\
[mypy]
plugins = actorflow.mypy_plugin
show_error_codes = True
[mypy-cloudpickle.*]
ignore_missing_imports = True
[mypy-cloudpickle]
ignore_missing_imports = True
"""


def expectations(marker: str) -> dict[int, str]:
    found = {}
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), start=1):
        match = re.search(rf"# {marker}: (.+)$", line)
        if match:
            found[number] = match.group(1).strip()
    return found


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = tmp_path_factory.mktemp("mypy") / "mypy.ini"
    config.write_text(CONFIG)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(HERE.parent / ".mypy_cache"),
            "--no-error-summary",
            str(EXAMPLE),
            str(HERE.parent / "examples" / "typed_handles.py"),
        ],
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: the errors the example makes on purpose
    return done.stdout


def short(type_name: str) -> str:
    return re.sub(r"\b(actorflow\._private\.worker\.\w+|typing_example)\.", "", type_name)


def reported(output: str, kind: str) -> dict[int, str]:
    found = {}
    for line in output.splitlines():
        match = re.match(rf".*typing_example\.py:(\d+): {kind}: (.+)$", line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


@pytest.mark.timeout(300)
def test_revealed_types(mypy_output):
    notes = reported(mypy_output, "note")
    revealed = {
        n: short(re.sub(r'^Revealed type is "(.*)"$', r"\1", text)) for n, text in notes.items()
    }
    expected = expectations("reveal")
    assert len(expected) >= 10
    assert {n: revealed.get(n) for n in expected} == expected, mypy_output


@pytest.mark.timeout(300)
def test_wrong_uses_are_reported_and_nothing_else(mypy_output):
    errors = reported(mypy_output, "error")
    codes = {n: re.search(r"\[([a-z-]+)\]$", text).group(1) for n, text in errors.items()}
    assert codes == expectations("error"), mypy_output
    assert 'Actor "Counter" has no method "nope"' in errors[min(errors)] or any(
        'has no method "nope"' in text for text in errors.values()
    )


@pytest.mark.timeout(300)
def test_the_typed_handles_example_is_clean(mypy_output):
    assert "typed_handles.py" not in mypy_output, mypy_output
