"""The driver's progress bars: tqdm bars drawn on its terminal for progress reported by tasks
and actors anywhere (actorflow.experimental.tqdm_ray) and by the driver itself.

A worker sends a bar's state (protocol core.WorkerProgress) to its driver at most every
``flush_interval_s`` and when the bar closes; the driver keeps one tqdm per bar (by its uuid),
each on its own line. Forwarded output lines are printed through ``write`` here, which clears
the bars, prints the lines and draws the bars again, so neither garbles the other.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any, TextIO


def _tqdm() -> Any:
    """The tqdm package's class, imported on first use, past any ``tqdm.py`` of the user's on
    the import path (Ray's own tqdm_ray example is a script named tqdm.py)."""
    module = sys.modules.get("tqdm")
    if module is None or not hasattr(module, "external_write_mode"):
        saved = list(sys.path)
        sys.path[:] = [p for p in saved if not os.path.isfile(os.path.join(p or ".", "tqdm.py"))]
        try:
            if module is not None:
                del sys.modules["tqdm"]
            module = importlib.import_module("tqdm")
        finally:
            sys.path[:] = saved
    return module.tqdm


class BarManager:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._bars: dict[str, Any] = {}
        self._free_positions: list[int] = []

    @property
    def active(self) -> bool:
        return bool(self._bars)

    def update(self, origin: str, state: dict[str, Any]) -> None:
        uuid = str(state.get("uuid", ""))
        with self._lock:
            bar = self._bars.get(uuid)
            desc = str(state.get("desc") or "")
            desc = f"{desc} ({origin})" if origin else desc
            if bar is None:
                if state.get("closed"):
                    return
                position = self._free_positions.pop(0) if self._free_positions else len(self._bars)
                bar = _tqdm()(
                    desc=desc,
                    total=state.get("total"),
                    unit=str(state.get("unit") or "it"),
                    position=position,
                    leave=True,
                    file=sys.stderr,
                    dynamic_ncols=True,
                )
                self._bars[uuid] = bar
            if bar.desc != desc:
                bar.set_description(desc, refresh=False)
            total = state.get("total")
            if total is not None and bar.total != total:
                bar.total = total
            x = int(state.get("x") or 0)
            if x != bar.n:
                bar.update(x - bar.n)
            else:
                bar.refresh()
            if state.get("closed"):
                self._bars.pop(uuid, None)
                self._free_positions.append(int(bar.pos if bar.pos >= 0 else -bar.pos))
                bar.close()

    def local(self, *, total: int | None, desc: str, unit: str) -> Any:
        """A bar of the driver's own (a with-block; closing it frees its line)."""
        manager = self
        key = f"local-{id(object())}-{len(self._bars)}"

        class _Local(_tqdm()):  # type: ignore[misc]
            def close(self) -> None:
                with manager._lock:
                    if manager._bars.pop(key, None) is not None:
                        manager._free_positions.append(abs(self.pos))
                super().close()

        with self._lock:
            position = self._free_positions.pop(0) if self._free_positions else len(self._bars)
            shown = _Local(
                total=total, desc=desc, unit=unit, position=position, leave=True, file=sys.stderr
            )
            self._bars[key] = shown
        return shown

    def write(self, stream: TextIO, text: str) -> None:
        """Print text on stream without tearing the bars (clear, print, redraw)."""
        with self._lock:
            if not self._bars:
                stream.write(text)
                stream.flush()
                return
            with _tqdm().external_write_mode(file=sys.stderr):
                stream.write(text)
                stream.flush()

    def close_all(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            self._free_positions.clear()


_manager: BarManager | None = None
_manager_lock = threading.Lock()


def manager() -> BarManager:
    """The driver's one BarManager (made on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = BarManager()
        return _manager


def active_manager() -> BarManager | None:
    return _manager if _manager is not None and _manager.active else None


def local_bar(*, total: int | None, desc: str, unit: str) -> Any:
    """A tqdm bar drawn in this process (the driver), below the distributed ones; registered
    so that forwarded output is printed around it."""
    return manager().local(total=total, desc=desc, unit=unit)
