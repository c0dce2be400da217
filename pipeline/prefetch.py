"""Run an iterator ahead in a background thread, so that producing the next items
(decoding video frames: FFmpeg releases the GIL) overlaps with consuming this one
(detection and landmarks: dlib and OpenCV release it too).

Its share of the speed of ``fermaps frames`` is in ``benchmarks/bench_video.py``'s
whole-process ratio, not measured on its own.

Why by hand: ``concurrent.futures`` maps a function over inputs, it does not run one
generator ahead; this is a queue and a thread.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Yield the items of ``items`` in order, producing up to ``depth`` of them ahead
    in a daemon thread.  An exception raised by the producer is raised here, at the
    position it happened (the items before it are yielded first).  Closing the returned
    generator early stops the producer after at most ``depth`` more items, and closes
    ``items`` (so a video file is released)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth!r}")
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    source = iter(items)

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in source:
                if not put((x, None)):
                    break
            else:
                put((_DONE, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((_DONE, e))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            x, err = q.get()
            if x is _DONE:
                if err is not None:
                    raise err
                return
            yield x
    finally:
        stop.set()
        worker.join()
