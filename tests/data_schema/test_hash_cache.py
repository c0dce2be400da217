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


def test_one_connection_per_process_and_a_forked_child_opens_its_own(tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    monkeypatch.setenv("FERMAPS_HASH_CACHE", str(db))
    monkeypatch.setattr(hash_cache, "SETTLE_NS", 0)
    opened = []
    real_connect = sqlite3.connect
    monkeypatch.setattr(hash_cache.sqlite3, "connect", lambda *a, **k: opened.append(a[0]) or real_connect(*a, **k))
    files = []
    for i in range(5):
        f = tmp_path / f"f{i}"
        f.write_bytes(bytes([i]) * 100)
        os.utime(f, ns=(OLD, OLD))
        files.append(f)
    for _ in range(2):  # a first pass fills the cache, the second reads it
        assert [cached_sha256(f) for f in files] == [hashlib.sha256(bytes([i]) * 100).hexdigest() for i in range(5)]
    assert opened == [db]
    assert len(rows(db)) == 5  # (rows' own connect is counted too)

    n = len(opened)
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's connection, and must still be right
        ok = cached_sha256(files[3]) == hashlib.sha256(bytes([3]) * 100).hexdigest() and len(opened) == n + 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
