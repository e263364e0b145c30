"""Two units of work at once: results in order (the features' partitions) or as each is done
(the rings' batches)."""

from __future__ import annotations

import threading

import pytest

from engine.services.parallel import two_at_once, two_at_once_as_done


def _reads(closed: list):
    """Six items, noting in `closed` when the reads end."""
    try:
        yield from range(6)
    finally:
        closed.append(True)


def test_a_big_first_item_holds_one_thread_while_the_other_takes_every_other_item():
    started = {i: threading.Event() for i in range(5)}

    def work(i):
        started[i].set()
        if i == 0:  # the busiest pair's batch: still at work when the other thread has done the rest
            return all(started[j].wait(timeout=10) for j in range(1, 5))
        return i * 10

    got = list(two_at_once_as_done(work, iter(range(5))))
    assert sorted(got) == [(0, True), (1, 10), (2, 20), (3, 30), (4, 40)]
    # (0, True): items 1-4 all started while item 0 held its thread, and 0 came back after 1-3
    assert got.index((0, True)) > max(got.index((j, j * 10)) for j in (1, 2, 3))


def test_every_position_comes_back_once_with_its_own_result():
    got = dict(two_at_once_as_done(lambda s: s.upper(), iter(["a", "b", "c"])))
    assert got == {0: "A", 1: "B", 2: "C"}
    assert list(two_at_once_as_done(lambda s: s, iter([]))) == []


def test_the_reads_end_as_soon_as_an_item_fails():
    closed = []

    def fail_on_two(i):
        if i == 2:
            raise ValueError("batch 2")
        return i

    with pytest.raises(ValueError, match="batch 2"):
        for _ in two_at_once_as_done(fail_on_two, _reads(closed)):
            pass
    assert closed == [True]


def test_a_slow_partition_holds_one_thread_not_both():
    started = {i: threading.Event() for i in range(4)}

    def work(i):
        started[i].set()
        if i == 0:  # the big partition: still at work when the second thread has taken two more
            return started[2].wait(timeout=10) and started[3].wait(timeout=10)
        return True

    assert list(two_at_once(work, iter(range(4)), pending=4)) == [True] * 4


def test_two_at_once_keeps_order_and_ends_the_reads_as_soon_as_a_partition_fails():
    closed = []
    assert list(two_at_once(lambda i: i * 10, _reads(closed), pending=4)) == [0, 10, 20, 30, 40, 50]

    def fail_on_three(i):
        if i == 3:
            raise ValueError("partition 3")
        return i

    closed.clear()
    got = []
    try:
        for value in two_at_once(fail_on_three, _reads(closed), pending=4):
            got.append(value)
    except ValueError:
        assert closed == [True]  # the reads ended before the error reached the caller
    assert got == [0, 1, 2]


def test_two_at_once_needs_room_for_two():
    with pytest.raises(ValueError, match="at least 2"):
        list(two_at_once(lambda i: i, iter(range(3)), pending=1))
