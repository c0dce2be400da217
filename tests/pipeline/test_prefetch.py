"""The background prefetcher keeps order, hands errors over where they happened and
releases its source when closed early."""
from __future__ import annotations

import threading

import pytest

from pipeline.prefetch import prefetch


def test_order_and_everything():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetch([], depth=1)) == []


def test_an_error_arrives_after_the_items_before_it():
    def gen():
        yield 1
        yield 2
        raise ValueError("frame 2 is broken")

    it = prefetch(gen(), depth=8)
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(ValueError, match="frame 2 is broken"):
        next(it)


def test_closing_early_stops_the_producer_and_closes_the_source():
    closed = threading.Event()
    produced = []

    def gen():
        try:
            for i in range(10 ** 6):
                produced.append(i)
                yield i
        finally:
            closed.set()

    it = prefetch(gen(), depth=4)
    assert next(it) == 0
    it.close()
    assert closed.wait(5)
    assert len(produced) <= 1 + 4 + 2          # the item taken, the queue, one in flight


def test_runs_ahead_in_another_thread():
    seen = []

    def gen():
        for i in range(3):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(gen())) == [0, 1, 2]
    assert seen == ["prefetch"] * 3
    with pytest.raises(ValueError):
        prefetch([1], depth=0).__next__()
