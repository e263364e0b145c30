"""Build a forensic report for one (wallet, pair) as of a point in time from the inputs it is given.

`build_report` turns an `Inputs` record (read from the store, cut at `as_of`, with
the SHAP section and the model's registry facts, by engine.services.report.assemble_report,
the one entry point the app and the CLI share) into the canonical content and computes
the fingerprint last. Nothing here reads a store or loads a model.

Determinism: the content holds no wall-clock time. ``generated_at`` IS ``as_of``
(the point in time the report describes; the CLI defaults it to the current
second and records it in ``provenance.query``), so assembling again from the same
store with the same query gives the same bytes and fingerprint. The wall-clock
moment a file was written is kept in the store's ``reports`` table instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from stellar_sdk import StrKey

import engine
from engine.assets import split_pair
from engine.schemas import TRADES_SCHEMA
from reports import sections
from reports.attest import SIGNATURE_RULE
from reports.canonical import Published, iso, publish, rows_sha256
from reports.trades import SIGNAL_POINTS, signal_counts, top_trades, trade_signals, wallet_view
from storage.errors import BadInput, NotFound

REPORT_FORMAT = "ledgerlens-forensic-report"
REPORT_VERSION = 2  # 2: signed (attestation beside the report), Markdown embeds the JSON as base64
TOP_N = 20
FINGERPRINT_RULE = (
    "fingerprint = SHA-256 (hex) of the canonical JSON of `report` (keys sorted, separators ',' ':', ASCII, "
    "no NaN, floats to 10 significant digits); the published file is the canonical JSON of "
    '{"anchor"?, "attestation"?, "fingerprint", "report"}, so the hashed bytes are those after \'"report":\' up to the final \'}\''
)


@dataclass(frozen=True)
class Report:
    """An assembled report: its canonical content and fingerprint (computed last)."""

    wallet: str
    pair_id: str
    as_of: datetime
    content: dict
    fingerprint: str

    def published(self, *, anchor: dict | None = None) -> Published:
        return Published(self.content, self.fingerprint, anchor)


@dataclass(frozen=True)
class Inputs:
    """Everything read from the store for one report, already cut at as_of."""

    score: dict | None
    trades: pl.DataFrame  # the wallet's trades in the pair (TRADES_SCHEMA, store order)
    ring_id: str | None
    ring: pl.DataFrame | None
    members: pl.DataFrame | None
    member_trades: pl.DataFrame
    loop_trade_ids: list[str]
    edges: pl.DataFrame
    funding_ops: pl.DataFrame
    accounts: pl.DataFrame
    annotations: pl.DataFrame
    runs: pl.DataFrame
    features: pl.DataFrame | None
    shap: dict  # reports.sections.shap_section of the scoring model's explanation, or why there is none
    model: dict  # the scoring model's version and feature-schema hash (engine.services.report.model_facts)


def check_query(wallet: str, pair_id: str) -> tuple[str, str]:
    wallet, pair_id = str(wallet).strip(), str(pair_id).strip()
    if not StrKey.is_valid_ed25519_public_key(wallet):
        raise BadInput(f"wallet {wallet!r} is not a valid Stellar account id (G..., 56 characters)")
    try:
        split_pair(pair_id)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    return wallet, pair_id


def build_report(inputs: Inputs, *, wallet: str, pair_id: str, as_of: datetime, settings) -> Report:
    """The report of `inputs` (read for `wallet` in `pair_id` as of `as_of`, already checked by check_query).

    Raises NotFound when the inputs hold neither a trade nor a score of the wallet in the pair."""
    if inputs.trades.height == 0 and inputs.score is None:
        raise NotFound(
            f"no trade and no score of {wallet} in {pair_id} at or before {iso(as_of)}; check the wallet and "
            "pair ids (`python -m engine export trades`) or ingest the range first"
        )
    content = build_content(inputs, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings)
    published = publish(content)  # last step: nothing is added after the fingerprint
    return Report(wallet, pair_id, as_of, published.report, published.fingerprint)


def build_content(inputs: Inputs, *, wallet: str, pair_id: str, as_of: datetime, settings) -> dict:
    """The report content (before normalisation and fingerprinting)."""
    members = [] if inputs.members is None else sorted(inputs.members.get_column("account_id").to_list())
    view = wallet_view(inputs.trades, wallet=wallet)
    signals = trade_signals(view, ring_members=[m for m in members if m != wallet],
                            loop_trade_ids=inputs.loop_trade_ids)  # fmt: skip
    return {
        "format": {"name": REPORT_FORMAT, "version": REPORT_VERSION, "fingerprint_rule": FINGERPRINT_RULE,
                   "signature_rule": SIGNATURE_RULE},
        "header": _header(inputs.score, inputs.model, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings),
        "anomalous_trades": {
            "selection_rule": "points per signal, highest first; ties: larger base amount, then trade id",
            "signal_points": SIGNAL_POINTS, "signal_counts": signal_counts(signals),
            "n_trades": inputs.trades.height, "rows": top_trades(signals, top_n=TOP_N, ring_id=inputs.ring_id),
        },  # fmt: skip
        "attributions": _attributions(inputs, wallet=wallet, as_of=as_of),
        "benford": sections.benford_section(view),
        "lineage": sections.lineage_section(inputs.edges, inputs.funding_ops, inputs.accounts, wallet=wallet,
                                            members=members, as_of=as_of),
        "ring": sections.ring_section(inputs.ring_id, inputs.ring, inputs.members, inputs.member_trades,
                                      inputs.edges.filter(pl.col("closed_at") <= as_of), wallet=wallet),
        "annotations": inputs.annotations.select(
            "id", "label", "note", "annotator_id", "annotated_at", "label_source", "pair_id", "hmac").to_dicts(),
        "provenance": _provenance(inputs, wallet=wallet, pair_id=pair_id, as_of=as_of),
    }  # fmt: skip


def _header(score: dict | None, model: dict, *, wallet: str, pair_id: str, as_of: datetime, settings) -> dict:
    base, counter = split_pair(pair_id)
    header = {
        "wallet": wallet, "pair_id": pair_id, "base_asset": base, "counter_asset": counter,
        "generated_at": as_of, "as_of": as_of, "ledgerlens_version": engine.__version__,
        "flag_threshold": settings.risk_score_flag_threshold,
    }  # fmt: skip
    if score is None:
        return {**header, "score": None, "score_note": "not available: no score for this wallet and pair at or "
                "before the report time; press Run analysis in the app (or, with the app closed, `python -m engine score`) "
                "and regenerate", "model": model}
    keys = ("score", "benford_flag", "ml_flag", "confidence", "ring_id", "bft_divergence", "scored_at")
    return {
        **header, **{k: score[k] for k in keys}, "score_timestamp": score["timestamp"],
        "flagged": score["score"] >= settings.risk_score_flag_threshold,
        "model": model,
    }


def _attributions(inputs: Inputs, *, wallet: str, as_of: datetime) -> dict:
    """SHAP attributions (given) and the wallet's feature values vs the pair's population."""
    snapshot = sections.features_snapshot(inputs.features, as_of=as_of)
    return {"shap": inputs.shap, "features": sections.features_section(snapshot, wallet=wallet)}


def _provenance(inputs: Inputs, *, wallet: str, pair_id: str, as_of: datetime) -> dict:
    t = inputs.trades
    runs = [{**r, "params": json.loads(r["params"])} for r in inputs.runs.select(
        "run_id", "source", "params", "status", "started_at", "finished_at", "n_trades", "n_operations",
        "n_quarantined", "n_ledgers").iter_rows(named=True)]  # a few rows: the ingest runs, not trades
    return {
        "query": {"wallet": wallet, "pair_id": pair_id, "as_of": as_of, "top_n": TOP_N,
                  "benford_windows": [w for w, _ in sections.BENFORD_WINDOWS],
                  "lineage_depth": sections.LINEAGE_DEPTH},
        "trades": {
            "n_rows": t.height, "sha256": rows_sha256(t), "columns": list(TRADES_SCHEMA),
            "serialisation": "canonical JSON list of row objects (TRADES_SCHEMA columns) ordered by op_id, id; "
                             "closed_at ISO-8601 UTC, amounts integer stroops",
            "first_ledger": t.get_column("ledger").min(), "last_ledger": t.get_column("ledger").max(),
            "first_closed_at": t.get_column("closed_at").min(), "last_closed_at": t.get_column("closed_at").max(),
        },
        "ring_trades": {"n_rows": inputs.member_trades.height, "sha256": rows_sha256(
            inputs.member_trades.select(list(TRADES_SCHEMA)))},
        "funding": {"n_edges": inputs.edges.filter(pl.col("closed_at") <= as_of).height},
        "n_annotations": inputs.annotations.height,
        "ingest_runs": runs,
    }  # fmt: skip
