"""Rings in the order an analyst reads them: by evidence, and "by score" really by score (never by name)."""

from __future__ import annotations

import polars as pl
import pytest

from engine.ring_order import order_rings, plural, with_evidence
from storage.errors import BadInput


def _rings() -> pl.DataFrame:
    return pl.DataFrame({
        "ring_id": ["ring_a", "ring_b", "ring_c", "ring_d"], "size": [3, 5, 4, 2],
        "volume_xlm": [10**9, 5 * 10**11, 2 * 10**10, None], "closed_loop_share": [0.1, 0.9, 0.5, 0.2],
        "max_score": [100, 100, 100, 40], "mean_score": [60.0, 95.0, 80.0, None],
    })  # fmt: skip


def test_evidence_ranks_volume_loops_and_member_scores_together():
    ranked = order_rings(_rings())
    assert ranked["ring_id"].to_list() == ["ring_b", "ring_c", "ring_a", "ring_d"]
    assert ranked["evidence"].to_list() == sorted(ranked["evidence"].to_list(), reverse=True)
    assert ranked["evidence"][0] == 100.0  # first on all three counts


def test_sort_by_score_breaks_equal_top_scores_by_the_members_scores_not_the_name():
    by_top = order_rings(_rings(), "highest member score")["ring_id"].to_list()
    assert by_top == ["ring_b", "ring_c", "ring_a", "ring_d"]  # all three at 100: mean 95 > 80 > 60
    assert order_rings(_rings(), "size")["ring_id"].to_list() == ["ring_b", "ring_c", "ring_a", "ring_d"]
    with pytest.raises(BadInput, match="unknown ring order"):
        order_rings(_rings(), "name")


def test_no_ring_and_grammar():
    assert with_evidence(_rings().clear())["evidence"].to_list() == []
    assert [plural(n, "ring") for n in (0, 1, 2, 1200)] == ["0 rings", "1 ring", "2 rings", "1,200 rings"]
