"""Two units of a step's work at once (the features' wallet partitions, the rings' batches of
pairs): polars and DuckDB leave a core idle for part of each unit (their single-threaded
steps, numpy's and scipy's), and a second unit fills it."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def two_at_once(fn: Callable[[T], R], items: Iterator[T], *, pending: int) -> Iterator[R]:
    """fn over items, two at once on threads of their own, results in the items' order.

    Up to `pending` items (at least 2) are under way or done and waiting for an earlier one, so
    one big item (a wallet with a million trades makes its partition four times the others at
    10M trades) holds one thread, not both; memory: `pending` items, their results and the one
    `items` is reading. When one fails or the caller stops, `items` is closed at once (the
    store's reads end) and the items still at work finish before the error goes on."""
    if pending < 2:
        raise ValueError(f"pending must be at least 2 (two at work), not {pending}")
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="two-at-once") as pool:
        running: deque[Future[R]] = deque()
        try:
            for item in items:
                running.append(pool.submit(fn, item))
                if len(running) == pending:
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
        finally:
            getattr(items, "close", lambda: None)()
            for future in running:
                future.cancel()


def two_at_once_as_done(fn: Callable[[T], R], items: Iterator[T]) -> Iterator[tuple[int, R]]:
    """fn over items, two at once on threads of their own: (the item's position in `items`, its
    result) as each is done, so a big item holds one thread while the other goes on through
    the rest (give the biggest first: the rings' batch of the busiest pair took 14 s of a
    10M-trade market's second pass alone, the other core idle, when it came last). Held at
    once: the two items at work and the one `items` is reading. When one fails or the caller
    stops, `items` is closed at once and the item still at work finishes before the error
    goes on."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="two-at-once") as pool:
        running: dict[Future[R], int] = {}
        try:
            for position, item in enumerate(items):
                running[pool.submit(fn, item)] = position
                if len(running) == 2:
                    yield from _done(running, wait(running, return_when=FIRST_COMPLETED).done)
            while running:
                yield from _done(running, wait(running, return_when=FIRST_COMPLETED).done)
        finally:
            getattr(items, "close", lambda: None)()
            for future in running:
                future.cancel()


def _done(running: dict[Future[R], int], done: set[Future[R]]) -> Iterator[tuple[int, R]]:
    for future in done:
        position = running.pop(future)
        yield position, future.result()
