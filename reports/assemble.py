"""Assemble a forensic report for one (wallet, pair) as of a point in time.

`assemble_report` is the one entry point the app and the CLI share. It reads
only what the Store holds at or before `as_of` (trades closed, scores scored,
annotations made, ingest runs started by then) plus the model registry's
metadata, builds the canonical content and computes the fingerprint last.

Determinism: the content holds no wall-clock time. ``generated_at`` IS ``as_of``
(the point in time the report describes; the CLI defaults it to the current
second and records it in ``provenance.query``), so assembling again from the same
store with the same query gives the same bytes and fingerprint. The wall-clock
moment a file was written is kept in the store's ``reports`` table instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from stellar_sdk import StrKey

import engine
from engine.assets import split_pair
from engine.schemas import FUNDING_TYPES, TRADES_SCHEMA
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


def assemble_report(store, *, wallet: str, pair_id: str, as_of: datetime | None = None, settings) -> Report:
    """The forensic report of `wallet` in `pair_id` as of `as_of` (default: now, to the second).

    Raises BadInput for a malformed wallet/pair, NotFound when the store holds
    neither a trade nor a score of the wallet in the pair by then.
    """
    wallet, pair_id = _check_query(wallet, pair_id)
    as_of = (as_of or datetime.now(UTC).replace(microsecond=0)).astimezone(UTC)
    inputs = load_inputs(store, wallet=wallet, pair_id=pair_id, as_of=as_of)
    if inputs.trades.height == 0 and inputs.score is None:
        raise NotFound(
            f"no trade and no score of {wallet} in {pair_id} at or before {iso(as_of)}; check the wallet and "
            "pair ids (`python -m engine export trades`) or ingest the range first"
        )
    content = build_content(inputs, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings)
    published = publish(content)  # last step: nothing is added after the fingerprint
    return Report(wallet, pair_id, as_of, published.report, published.fingerprint)


def _check_query(wallet: str, pair_id: str) -> tuple[str, str]:
    wallet, pair_id = str(wallet).strip(), str(pair_id).strip()
    if not StrKey.is_valid_ed25519_public_key(wallet):
        raise BadInput(f"wallet {wallet!r} is not a valid Stellar account id (G..., 56 characters)")
    try:
        split_pair(pair_id)
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    return wallet, pair_id


def load_inputs(store, *, wallet: str, pair_id: str, as_of: datetime) -> Inputs:
    """Read the report's inputs from the store, each cut at `as_of`."""
    before = pl.col("closed_at") <= as_of
    score = _score(store, wallet=wallet, pair_id=pair_id, as_of=as_of)
    ring_id, ring, members = _ring(store, wallet=wallet, score=score)
    if members is not None and members.height:
        ids = pl.Series(members.get_column("account_id").to_list(), dtype=pl.String).implode()
        pair_trades = store.trades(pair_id=pair_id).filter(before)
        mine = pair_trades.filter((pl.col("seller_account") == wallet) | (pl.col("buyer_account") == wallet))
        member_trades = pair_trades.filter(pl.col("seller_account").is_in(ids) & pl.col("buyer_account").is_in(ids))
    else:
        mine = store.trades(account=wallet, pair_id=pair_id).filter(before)
        member_trades = mine.clear()
    annotations = store.annotations(wallet=wallet).filter(
        (pl.col("pair_id").is_null() | (pl.col("pair_id") == pair_id)) & (pl.col("annotated_at") <= as_of))
    return Inputs(
        score=score, trades=mine.select(list(TRADES_SCHEMA)), ring_id=ring_id, ring=ring, members=members,
        member_trades=member_trades, loop_trade_ids=_loop_trade_ids(store, pair_id=pair_id, trades=mine),
        edges=store.funding_edges(), funding_ops=store.operations(types=FUNDING_TYPES), accounts=store.accounts(),
        annotations=annotations, runs=store.runs(limit=1_000_000).filter(pl.col("started_at") <= as_of).sort("run_id"),
        features=_derived(store, "features", pair_id=pair_id),
    )  # fmt: skip


def _score(store, *, wallet: str, pair_id: str, as_of: datetime) -> dict | None:
    """The last score of (wallet, pair) recorded at or before as_of."""
    history = store.score_history(wallet, pair_id=pair_id).filter(pl.col("scored_at") <= as_of)
    return history.row(history.height - 1, named=True) if history.height else None


def _derived(store, name: str, **where) -> pl.DataFrame | None:
    """A derived table filtered by column values (None when never computed)."""
    try:
        return store.load_derived(name, where=where or None)
    except BadInput:  # the table exists but lacks a filter column: take it whole
        return store.load_derived(name)


def _ring(store, *, wallet: str, score: dict | None):
    """(ring_id, rings rows, ring_members rows) of the wallet's ring; members None = rings never run."""
    mine = _derived(store, "ring_members", account_id=wallet)
    if mine is None:
        return (score or {}).get("ring_id"), None, None
    ring_id = (score or {}).get("ring_id") or (mine.get_column("ring_id").sort()[0] if mine.height else None)
    if ring_id is None:
        return None, None, mine.clear()
    members = _derived(store, "ring_members", ring_id=ring_id)
    return ring_id, _derived(store, "rings", ring_id=ring_id), members


def _loop_trade_ids(store, *, pair_id: str, trades: pl.DataFrame) -> list[str]:
    loops = _derived(store, "closed_loops", pair_id=pair_id)
    if loops is None or "trade_ids" not in loops.columns:
        return []
    ids = loops.select(pl.col("trade_ids").explode()).get_column("trade_ids")
    return sorted(set(ids.to_list()) & set(trades.get_column("id").to_list()))


def build_content(inputs: Inputs, *, wallet: str, pair_id: str, as_of: datetime, settings) -> dict:
    """The report content (before normalisation and fingerprinting)."""
    members = [] if inputs.members is None else sorted(inputs.members.get_column("account_id").to_list())
    view = wallet_view(inputs.trades, wallet=wallet)
    signals = trade_signals(view, ring_members=[m for m in members if m != wallet],
                            loop_trade_ids=inputs.loop_trade_ids)  # fmt: skip
    return {
        "format": {"name": REPORT_FORMAT, "version": REPORT_VERSION, "fingerprint_rule": FINGERPRINT_RULE,
                   "signature_rule": SIGNATURE_RULE},
        "header": _header(inputs.score, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings),
        "anomalous_trades": {
            "selection_rule": "points per signal, highest first; ties: larger base amount, then trade id",
            "signal_points": SIGNAL_POINTS, "signal_counts": signal_counts(signals),
            "n_trades": inputs.trades.height, "rows": top_trades(signals, top_n=TOP_N, ring_id=inputs.ring_id),
        },  # fmt: skip
        "attributions": _attributions(inputs, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings),
        "benford": sections.benford_section(view),
        "lineage": sections.lineage_section(inputs.edges, inputs.funding_ops, inputs.accounts, wallet=wallet,
                                            members=members, as_of=as_of),
        "ring": sections.ring_section(inputs.ring_id, inputs.ring, inputs.members, inputs.member_trades,
                                      inputs.edges.filter(pl.col("closed_at") <= as_of), wallet=wallet),
        "annotations": inputs.annotations.select(
            "id", "label", "note", "annotator_id", "annotated_at", "label_source", "pair_id", "hmac").to_dicts(),
        "provenance": _provenance(inputs, wallet=wallet, pair_id=pair_id, as_of=as_of),
    }  # fmt: skip


def _header(score: dict | None, *, wallet: str, pair_id: str, as_of: datetime, settings) -> dict:
    base, counter = split_pair(pair_id)
    header = {
        "wallet": wallet, "pair_id": pair_id, "base_asset": base, "counter_asset": counter,
        "generated_at": as_of, "as_of": as_of, "ledgerlens_version": engine.__version__,
        "flag_threshold": settings.risk_score_flag_threshold,
    }  # fmt: skip
    if score is None:
        return {**header, "score": None, "score_note": "not available: no score for this wallet and pair at or "
                "before the report time; run `python -m engine score` and regenerate", "model": _model(None, settings)}
    keys = ("score", "benford_flag", "ml_flag", "confidence", "ring_id", "bft_divergence", "scored_at")
    return {
        **header, **{k: score[k] for k in keys}, "score_timestamp": score["timestamp"],
        "flagged": score["score"] >= settings.risk_score_flag_threshold,
        "model": _model(score["model_version"], settings),
    }


def _model(version: str | None, settings) -> dict:
    """Model version and feature-schema hash from the registry's metadata (not unpickled, not re-verified)."""
    if version is None:
        return {"version": None, "feature_schema_hash": None, "note": "not available: no score"}
    path = Path(settings.models_dir) / version / "model_metadata.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"version": version, "feature_schema_hash": None,
                "note": f"not available: model {version} is not in the registry ({settings.models_dir})"}
    schema = meta.get("feature_schema_hash") or meta.get("schema_hash")
    if schema is None and meta.get("feature_columns"):
        from models.registry import schema_hash

        schema = schema_hash(list(meta["feature_columns"]))
    return {"version": version, "feature_schema_hash": schema, "n_features": len(meta.get("feature_columns", [])),
            "note": "from the registry's model_metadata.json"}  # fmt: skip


def _attributions(inputs: Inputs, *, wallet: str, pair_id: str, as_of: datetime, settings) -> dict:
    """SHAP attributions (engine.explain) and the wallet's feature values vs the pair's population."""
    snapshot = sections.features_snapshot(inputs.features, as_of=as_of)
    version = (inputs.score or {}).get("model_version")
    return {
        "shap": sections.shap_section(snapshot, wallet=wallet, pair_id=pair_id, model_version=version,
                                      settings=settings),
        "features": sections.features_section(snapshot, wallet=wallet),
    }  # fmt: skip


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
