"""In which order an analyst reads detected rings: by the evidence they carry, not by name.

A ring's `evidence` (0-100) is the mean of three percentile ranks among the rings listed: its internal
volume in XLM, its closed-loop share and its members' mean score. Each sort key breaks its ties with the
evidence, then the ring id, so two rings never swap between two runs.
"""

from __future__ import annotations

import polars as pl

from storage.errors import BadInput

EVIDENCE_PARTS = ("volume_xlm", "closed_loop_share", "mean_score")
SORTS = {
    "evidence": ("evidence",),
    "members' mean score": ("mean_score", "max_score"),
    "highest member score": ("max_score", "mean_score"),
    "internal volume (XLM)": ("volume_xlm",),
    "closed-loop share": ("closed_loop_share",),
    "size": ("size",),
}


def with_evidence(rings: pl.DataFrame) -> pl.DataFrame:
    """`rings` plus an `evidence` column (unknown parts rank lowest).

    rings: [ring_id, size, closed_loop_share, max_score, mean_score, volume_xlm, ...]. Shapes: -> rings + [evidence: f64]."""
    if rings.height == 0:
        return rings.with_columns(evidence=pl.lit(None, dtype=pl.Float64))
    ranks = [pl.col(c).cast(pl.Float64).fill_null(-1.0).rank("average") / rings.height for c in EVIDENCE_PARTS]
    return rings.with_columns(evidence=(pl.mean_horizontal(ranks) * 100).round(1))


def order_rings(rings: pl.DataFrame, by: str = "evidence") -> pl.DataFrame:
    """Rings with `evidence`, strongest first by `by` (one of SORTS), ties by evidence then ring id."""
    if by not in SORTS:
        raise BadInput(f"unknown ring order {by!r}; choose one of {', '.join(SORTS)}")
    keys = list(dict.fromkeys([*SORTS[by], "evidence"]))
    return with_evidence(rings).sort([*keys, "ring_id"], descending=[True] * len(keys) + [False], nulls_last=True)


def plural(n: int, noun: str, many: str | None = None) -> str:
    """ "1 ring", "2 rings", "0 rings" (numbers with thousands separators)."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"
