from __future__ import annotations

import threading

import pytest

from engine.ingest.runner import prefetch


def test_prefetch_keeps_order_and_raises_the_sources_error_in_the_consumer():
    def source():
        yield from range(5)
        raise ValueError("bad page 6")

    got = []
    with pytest.raises(ValueError, match="bad page 6"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_prefetch_reads_ahead_on_its_own_thread_and_closes_the_source_when_the_consumer_stops():
    threads, closed = [], threading.Event()

    def source():
        try:
            for i in range(100):
                threads.append(threading.current_thread().name)
                yield i
        finally:
            closed.set()  # e.g. a DuckDB connection closing

    stream = prefetch(source())
    assert next(stream) == 0
    stream.close()  # the consumer stops early (the fast reader hands over to the line reader)
    assert closed.wait(2.0), "the source was left open"
    assert set(threads) == {"ingest-prefetch"} and len(threads) < 100
