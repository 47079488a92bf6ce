"""Where the GCS keeps its tables so that a restarted head finds them again.

``open_storage(url)``:
  ""                      in memory only (the embedded cluster of ``init()``: it ends with
                          its driver, so there is nothing to come back to);
  "sqlite:///PATH"        an embedded SQLite file (the default of ``actorflow start --head``:
                          ``<session>/gcs.sqlite``);
  "redis://HOST:PORT/DB"  a Redis server (needs the ``redis`` package: ``pip install
                          actorflow[redis]``).

A table is a mapping of string keys to msgpack-able values. Every change is written through
before the GCS answers the message that caused it, so what a caller was told survives a crash.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs published


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class MemoryStorage:
    durable = False

    def load(self) -> dict[str, dict[str, Any]]:
        return {}

    def put(self, table: str, key: str, value: Any) -> None:
        pass

    def delete(self, table: str, key: str) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteStorage:
    durable = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL with synchronous=NORMAL survives a crash of the process (not of the machine's
        # power) and costs microseconds per write, which the GCS off the hot path can afford.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS gcs (tbl TEXT NOT NULL, key TEXT NOT NULL, "
            "value BLOB NOT NULL, PRIMARY KEY (tbl, key))"
        )

    def load(self) -> dict[str, dict[str, Any]]:
        tables: dict[str, dict[str, Any]] = {}
        for tbl, key, value in self._db.execute("SELECT tbl, key, value FROM gcs"):
            tables.setdefault(tbl, {})[key] = _unpack(value)
        return tables

    def put(self, table: str, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO gcs (tbl, key, value) VALUES (?, ?, ?)",
            (table, key, _pack(value)),
        )

    def delete(self, table: str, key: str) -> None:
        self._db.execute("DELETE FROM gcs WHERE tbl = ? AND key = ?", (table, key))

    def close(self) -> None:
        self._db.close()


class RedisStorage:
    """One Redis hash per table, under a prefix."""

    durable = True

    def __init__(self, url: str, prefix: str = "actorflow:gcs:") -> None:
        try:
            import redis
        except ImportError:
            raise ValueError(
                f"--storage {url}: Redis storage needs the redis package "
                f"(pip install 'actorflow[redis]')"
            ) from None
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            self._client.ping()
        except Exception as exc:
            raise ConnectionError(f"--storage {url}: cannot reach Redis ({exc})") from None

    def load(self) -> dict[str, dict[str, Any]]:
        tables: dict[str, dict[str, Any]] = {}
        for name in self._client.scan_iter(match=self.prefix + "*"):
            table = bytes(name).decode()[len(self.prefix) :]
            rows: dict[Any, Any] = self._client.hgetall(name)  # type: ignore[assignment]
            tables[table] = {bytes(k).decode(): _unpack(bytes(v)) for k, v in rows.items()}
        return tables

    def put(self, table: str, key: str, value: Any) -> None:
        self._client.hset(self.prefix + table, key, _pack(value))

    def delete(self, table: str, key: str) -> None:
        self._client.hdel(self.prefix + table, key)

    def close(self) -> None:
        self._client.close()


class CountingStorage:
    """A storage that counts its writes, by table and kind, for the GCS's /metrics."""

    def __init__(self, inner: MemoryStorage | SqliteStorage | RedisStorage) -> None:
        self.inner = inner
        self.durable = inner.durable
        self.writes: dict[tuple[str, str], int] = {}

    def load(self) -> dict[str, dict[str, Any]]:
        return self.inner.load()

    def put(self, table: str, key: str, value: Any) -> None:
        self.inner.put(table, key, value)
        self.writes[(table, "put")] = self.writes.get((table, "put"), 0) + 1

    def delete(self, table: str, key: str) -> None:
        self.inner.delete(table, key)
        self.writes[(table, "delete")] = self.writes.get((table, "delete"), 0) + 1

    def close(self) -> None:
        self.inner.close()


Storage = MemoryStorage | SqliteStorage | RedisStorage | CountingStorage


def open_storage(url: str) -> Storage:
    if not url:
        return MemoryStorage()
    if url.startswith("sqlite:///"):
        return SqliteStorage(url[len("sqlite://") :])
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStorage(url)
    raise ValueError(f"unknown GCS storage {url!r}: use sqlite:///PATH or redis://HOST:PORT")
