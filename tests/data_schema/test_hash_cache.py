"""The sha256 stat cache: right digests from hashlib, reuse only while the stat is
unchanged, never a stale digest after a rewrite that keeps size and mtime."""
import hashlib
import os
import sqlite3

from data_schema import hash_cache
from data_schema.hash_cache import cached_sha256

OLD = 1_600_000_000_000_000_000  # a settled mtime (2020), in ns


def rows(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT path, digest FROM sha").fetchall()


def test_digest_cached_while_stat_unchanged_and_renewed_after_a_disguised_rewrite(tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    monkeypatch.setenv("FERMAPS_HASH_CACHE", str(db))
    f = tmp_path / "shard.h5"
    f.write_bytes(b"a" * 1000)
    os.utime(f, ns=(OLD, OLD))
    monkeypatch.setattr(hash_cache, "SETTLE_NS", 0)  # the test's ctime is fresh: trust it
    assert cached_sha256(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert rows(db) == [(str(f), hashlib.sha256(b"a" * 1000).hexdigest())]

    # a planted digest is returned while the stat is unchanged: the file is not re-read
    with sqlite3.connect(db) as con:
        con.execute("UPDATE sha SET digest = 'planted'")
    assert cached_sha256(f) == "planted"

    # same size, mtime set back: ctime moved, so the new bytes are hashed
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(OLD, OLD))
    assert cached_sha256(f) == hashlib.sha256(b"b" * 1000).hexdigest()


def test_fresh_files_are_hashed_but_not_remembered(tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    monkeypatch.setenv("FERMAPS_HASH_CACHE", str(db))
    f = tmp_path / "new.h5"
    f.write_bytes(b"xyz")
    assert cached_sha256(f) == hashlib.sha256(b"xyz").hexdigest()
    assert rows(db) == []  # written within SETTLE_NS: a same-tick rewrite could hide


def test_off_and_unusable_cache_still_hash(tmp_path, monkeypatch):
    f = tmp_path / "x"
    f.write_bytes(b"123")
    monkeypatch.setenv("FERMAPS_HASH_CACHE", "off")
    assert cached_sha256(f) == hashlib.sha256(b"123").hexdigest()
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    monkeypatch.setenv("FERMAPS_HASH_CACHE", str(tmp_path / "blocker" / "c.sqlite"))
    assert cached_sha256(f) == hashlib.sha256(b"123").hexdigest()
