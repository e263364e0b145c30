"""Forensic reports (the `report`, `verify-report` and Wallet / Reports page use cases).

`assemble_report` reads what the store holds at or before `as_of`, explains the score
through engine.services.explain (the Wallet page's road) and hands an `Inputs` record
to reports.assemble.build_report, which renders nothing it was not given.
`generate_report` signs and writes the file and records it; `verify_report(_file)`
checks one, regenerating it from the store when one is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from engine.schemas import FUNDING_TYPES, TRADES_SCHEMA
from engine.services.explain import explain
from engine.services.models import signing_key, trusted_fingerprints
from models.registry import METADATA, schema_hash
from reports import verify
from reports.anchor import anchor_from_settings
from reports.assemble import Inputs, Report, build_report, check_query
from reports.attest import sign_published, signer_fingerprint
from reports.output import default_path, write_report
from reports.sections import features_snapshot, not_available, shap_section
from storage.errors import BadInput, UserFacingError
from storage.store import Store

FORMATS = ("pdf", "json", "markdown")
SHAP_TOP = 10  # contributions a report lists


@dataclass(frozen=True)
class GeneratedReport:
    path: Path
    fingerprint: str
    fmt: str
    anchor: dict | None
    key_fingerprint: str  # of the key that signed it


def assemble_report(store: Store, *, wallet: str, pair_id: str, as_of: datetime | None = None, settings) -> Report:
    """The forensic report of `wallet` in `pair_id` as of `as_of` (default: now, to the second).

    Raises BadInput for a malformed wallet/pair, NotFound when the store holds
    neither a trade nor a score of the wallet in the pair by then."""
    wallet, pair_id = check_query(wallet, pair_id)
    as_of = (as_of or datetime.now(UTC).replace(microsecond=0)).astimezone(UTC)
    inputs = load_inputs(store, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings)
    return build_report(inputs, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings)


def generate_report(
    store: Store, *, wallet: str, pair_id: str, fmt: str, settings, as_of: datetime | None = None,
    out: Path | None = None, out_dir: Path | None = None, anchor: bool = False, anchor_key: Path | None = None,
) -> GeneratedReport:  # fmt: skip
    """Assemble the (wallet, pair) report as of `as_of` (default: now, to the second),
    sign it with the settings' signing key (the model-signing key), write it (mode 0o600)
    to `out`, or into `out_dir`, or under $LEDGERLENS_HOME/reports/forensic, and record
    it in the store."""
    as_of = as_of or datetime.now(UTC).replace(microsecond=0)
    report = assemble_report(store, wallet=wallet, pair_id=pair_id, as_of=as_of, settings=settings)
    anchored = anchor_from_settings(report.fingerprint, settings, key_path=anchor_key) if anchor else None
    path = out or default_path(settings, wallet=report.wallet, fingerprint=report.fingerprint, fmt=fmt)
    if out is None and out_dir is not None:
        path = Path(out_dir) / Path(path).name
    signed = sign_published(report.published(anchor=anchored), signing_key(settings))
    write_report(signed, fmt=fmt, path=path)
    store.record_report(
        fingerprint=report.fingerprint, wallet=report.wallet, pair_id=report.pair_id, fmt=fmt, path=str(path),
        model_version=report.content["header"]["model"]["version"],
    )  # fmt: skip
    return GeneratedReport(Path(path), report.fingerprint, fmt, anchored, signer_fingerprint(signed))


def verify_report_file(path: Path, *, settings=None, trusted: frozenset[str] | None = None,
                       store: Store | None = None) -> verify.Verification:  # fmt: skip
    """reports.verify.verify_report_file trusting `trusted` (default: the settings' trust list), and
    regenerated from `store` when one is given (with settings)."""
    return verify.verify_report_file(path, trusted=_trusted(trusted, settings),
                                     regenerate=_regenerate(store, settings))  # fmt: skip


def verify_report(data: bytes, *, settings=None, trusted: frozenset[str] | None = None,
                  store: Store | None = None) -> verify.Verification:  # fmt: skip
    """reports.verify.verify_report of a report's bytes (an upload), trusted keys as in verify_report_file."""
    return verify.verify_report(data, trusted=_trusted(trusted, settings), regenerate=_regenerate(store, settings))


def _trusted(trusted: frozenset[str] | None, settings) -> frozenset[str]:
    """The given fingerprints, else the settings' trust list, else none (no signer is trusted)."""
    if trusted is not None:
        return trusted
    return trusted_fingerprints(settings) if settings is not None else frozenset()


def _regenerate(store: Store | None, settings):
    if store is None or settings is None:
        return None
    return lambda **query: assemble_report(store, settings=settings, **query)


# -- the inputs, read from the store --------------------------------------------------------------------------------


def load_inputs(store: Store, *, wallet: str, pair_id: str, as_of: datetime, settings) -> Inputs:
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
    features = _derived(store, "features", pair_id=pair_id)
    return Inputs(
        score=score, trades=mine.select(list(TRADES_SCHEMA)), ring_id=ring_id, ring=ring, members=members,
        member_trades=member_trades, loop_trade_ids=_loop_trade_ids(store, pair_id=pair_id, trades=mine),
        edges=store.funding_edges(), funding_ops=store.operations(types=FUNDING_TYPES), accounts=store.accounts(),
        annotations=annotations, runs=store.runs(limit=1_000_000).filter(pl.col("started_at") <= as_of).sort("run_id"),
        features=features, shap=shap_facts(features, wallet=wallet, pair_id=pair_id, as_of=as_of, score=score,
                                          settings=settings),
        model=model_facts((score or {}).get("model_version"), settings),
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


# -- the model's part: SHAP through the one road, registry facts -----------------------------------------------------


def shap_facts(features: pl.DataFrame | None, *, wallet: str, pair_id: str, as_of: datetime, score: dict | None,
               settings) -> dict:  # fmt: skip
    """The report's SHAP section: the scoring model's explanation of the wallet's row in the pair's feature
    snapshot as of `as_of` (engine.services.explain.explain), or why there is none."""
    version = (score or {}).get("model_version")
    snapshot = features_snapshot(features, as_of=as_of)
    if version is None:
        return not_available("no score: press Run analysis in the app (or, with the app closed, `python -m engine score`), then regenerate")
    if snapshot is None or snapshot.height == 0:
        return not_available("no feature matrix is stored for this pair: press Run analysis in the app (or, with the app closed, `python -m engine features`)")
    if not (Path(settings.models_dir) / version).is_dir():
        return not_available(f"model {version} is not in the registry {settings.models_dir}")
    try:
        exp = explain(settings, snapshot, wallet=wallet, pair_id=pair_id, version=version, top=SHAP_TOP)
    except UserFacingError as exc:  # NotFound row, ModelIntegrityError, schema mismatch: said, not hidden
        return not_available(str(exc))
    return shap_section(exp, model_version=version)


def model_facts(version: str | None, settings) -> dict:
    """Model version and feature-schema hash from the registry's metadata (not unpickled, not re-verified)."""
    if version is None:
        return {"version": None, "feature_schema_hash": None, "note": "not available: no score"}
    path = Path(settings.models_dir) / version / METADATA
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"version": version, "feature_schema_hash": None,
                "note": f"not available: model {version} is not in the registry ({settings.models_dir})"}
    schema = meta.get("feature_schema_hash") or meta.get("schema_hash")
    if schema is None and meta.get("feature_columns"):
        schema = schema_hash(list(meta["feature_columns"]))
    return {"version": version, "feature_schema_hash": schema, "n_features": len(meta.get("feature_columns", [])),
            "note": "from the registry's model_metadata.json"}  # fmt: skip
