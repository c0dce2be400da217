"""sha256 of a file, remembered by the file's stat so that a rerun does not read every
shard and every raw file again (DVC keeps the same kind of state).

An entry is keyed by the absolute path and trusted only while (device, inode, size,
mtime_ns, ctime_ns) are all unchanged.  ctime cannot be set from user space and changes
on every write, rename or copy-with-times, so a file replaced or rewritten in place gets
a new key.  Racy entries are never stored: the stat is taken before and after hashing
and must agree, and a file whose mtime or ctime is less than ``SETTLE_NS`` old is hashed
but not remembered (a write in the same clock tick would not move the timestamps).

The cache is a SQLite file (safe for concurrent stage processes) at
``$FERMAPS_HASH_CACHE``, default ``$XDG_CACHE_HOME/fermaps/sha256.sqlite``
(``~/.cache/...``); ``FERMAPS_HASH_CACHE=off`` disables it.  It lives outside the
stores: their bytes never depend on it, and deleting it only costs time.  A process
keeps one connection per cache file and thread (opening one per lookup cost ~8x the
lookup itself: ~90 vs ~12 us per file, i.e. ~35 s per ingest rerun over 100,000 scans).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

SETTLE_NS = 2_000_000_000  # 2 s: coarser than any Linux filesystem's timestamp tick (FAT: 2 s)


def cache_path() -> Path | None:
    """Where the cache lives (None when disabled)."""
    env = os.environ.get("FERMAPS_HASH_CACHE", "")
    if env.lower() == "off":
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fermaps" / "sha256.sqlite"


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex sha256 of the file's bytes, read now (no cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


_OPEN = threading.local()  # .cons: (cache file, pid) -> connection or None, per thread


def _connect(db: Path) -> sqlite3.Connection | None:
    """This thread's connection to ``db`` (opened on first use; None when unusable).
    Keyed by pid too: a forked child must not use its parent's connection."""
    cons = _OPEN.__dict__.setdefault("cons", {})
    key = (str(db), os.getpid())
    if key not in cons:
        cons[key] = _open(db)
    return cons[key]


def _open(db: Path) -> sqlite3.Connection | None:
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(db, timeout=30)
        con.execute("CREATE TABLE IF NOT EXISTS sha (path TEXT PRIMARY KEY, dev INT, ino INT, size INT, "
                    "mtime INT, ctime INT, digest TEXT)")
        return con
    except (OSError, sqlite3.Error):  # an unusable cache only costs time
        return None


def cached_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes; from the cache when its stat is unchanged.
    Raises OSError like ``open`` when the file cannot be read."""
    path = os.path.abspath(path)
    before = os.stat(path)
    db = cache_path()
    con = _connect(db) if db is not None else None
    if con is None:
        return file_sha256(path)
    try:
        with con:
            row = con.execute("SELECT dev, ino, size, mtime, ctime, digest FROM sha WHERE path = ?",
                              (path,)).fetchone()
            if row is not None and tuple(row[:5]) == _stat_key(before):
                return row[5]
            digest = file_sha256(path)
            after = os.stat(path)
            settled = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) > SETTLE_NS
            if _stat_key(after) == _stat_key(before) and settled:
                con.execute("INSERT OR REPLACE INTO sha VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (path, *_stat_key(after), digest))
            return digest
    except sqlite3.Error:  # e.g. the cache file replaced under us: it only costs time
        return file_sha256(path)
