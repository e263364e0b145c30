"""Pure XDR -> canonical rows: the DEX fills and funding / offer operations of one
`LedgerCloseMeta`, as Horizon would report them.

Fills are the `ClaimAtom`s of successful manage sell / manage buy / passive sell
offer results (`offers_claimed`) and path-payment results (`offers`). In a claim
atom the offer owner (an account, or a liquidity pool) sold `asset_sold` to the
taker (the operation's source, else the transaction's), who paid `asset_bought`:
that is the canonical seller/buyer form of `engine.schemas.TRADES_SCHEMA`.

Envelopes in a ledger's transaction set are not in apply order (and in
`LedgerCloseMeta` V1/V2 they sit in generalized-set phases), so they are matched
to the results in `tx_processing` (apply order) by transaction hash, which needs
the network passphrase; the known networks are tried in turn.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import polars as pl
from stellar_sdk import Network, StrKey, xdr

from engine.assets import pair_id_expr
from engine.schemas import NATIVE_ASSET, OPERATIONS_SCHEMA, TRADES_SCHEMA

PASSPHRASES: tuple[str, ...] = (
    Network.PUBLIC_NETWORK_PASSPHRASE,
    Network.TESTNET_NETWORK_PASSPHRASE,
    Network.FUTURENET_NETWORK_PASSPHRASE,
)
SYNTHETIC_OFFER_BIT = 1 << 62  # Horizon's marker for "the taker left no offer"
SOURCE = "datalake"

_T = xdr.OperationType
_OFFER_RESULTS = {
    _T.MANAGE_SELL_OFFER: "manage_sell_offer_result",
    _T.MANAGE_BUY_OFFER: "manage_buy_offer_result",
    _T.CREATE_PASSIVE_SELL_OFFER: "create_passive_sell_offer_result",
}
_PATH_RESULTS = {
    _T.PATH_PAYMENT_STRICT_RECEIVE: "path_payment_strict_receive_result",
    _T.PATH_PAYMENT_STRICT_SEND: "path_payment_strict_send_result",
}
_TX_OK = (xdr.TransactionResultCode.txSUCCESS, xdr.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS)


class LedgerDecodeError(ValueError):
    """A ledger whose content cannot be turned into rows (the message says why)."""


@dataclass(frozen=True)
class AppliedTx:
    """One transaction in apply order, its envelope matched to its result."""

    index: int  # 1-based apply order within the ledger (TOID tx part)
    hash_hex: str
    source: str  # G... of the (inner) transaction source
    memo: str | None
    operations: list  # xdr.Operation
    successful: bool
    results: list | None  # xdr.OperationResult per operation, when the result has them
    meta: xdr.TransactionMeta


def toid(ledger: int, tx_index: int, op_index: int) -> int:
    """Horizon's total order id: (ledger << 32) | (tx_index << 12) | op_index."""
    return (ledger << 32) | (tx_index << 12) | op_index


# -- small XDR value helpers ----------------------------------------------------------


@lru_cache(maxsize=65536)
def _g(raw: bytes) -> str:
    return StrKey.encode_ed25519_public_key(raw)


def account_str(acc: xdr.AccountID) -> str:
    return _g(acc.account_id.ed25519.uint256)


def muxed_str(acc: xdr.MuxedAccount) -> str:
    """G... address of a (possibly muxed) account: muxed ids are dropped."""
    if acc.type == xdr.CryptoKeyType.KEY_TYPE_MUXED_ED25519:
        return _g(acc.med25519.ed25519.uint256)
    return _g(acc.ed25519.uint256)


def asset_str(asset: xdr.Asset) -> str:
    """`XLM:native` or `CODE:ISSUER`; raises LedgerDecodeError on other asset types."""
    if asset.type == xdr.AssetType.ASSET_TYPE_NATIVE:
        return NATIVE_ASSET
    if asset.type == xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM4:
        code, issuer = asset.alpha_num4.asset_code.asset_code4, asset.alpha_num4.issuer
    elif asset.type == xdr.AssetType.ASSET_TYPE_CREDIT_ALPHANUM12:
        code, issuer = asset.alpha_num12.asset_code.asset_code12, asset.alpha_num12.issuer
    else:
        raise LedgerDecodeError(f"unknown asset type {asset.type!r}")
    # Codes are untrusted bytes: decoded, never interpreted.
    return code.rstrip(b"\x00").decode("utf-8", "replace") + ":" + account_str(issuer)


def _memo_str(memo: xdr.Memo) -> str | None:
    t = memo.type
    if t == xdr.MemoType.MEMO_TEXT:
        return memo.text.decode("utf-8", "replace")
    if t == xdr.MemoType.MEMO_ID:
        return str(memo.id.uint64)
    if t == xdr.MemoType.MEMO_HASH:
        return memo.hash.hash.hex()
    if t == xdr.MemoType.MEMO_RETURN:
        return memo.ret_hash.hash.hex()
    return None


def _balance_id(bid: xdr.ClaimableBalanceID) -> str:
    """Horizon's form: the 4-byte type (00000000) then the hash, hex."""
    return f"{bid.type.value:08x}{bid.v0.hash.hex()}"


# -- ledger structure ------------------------------------------------------------------


def _body(lcm: xdr.LedgerCloseMeta):
    body = {0: lcm.v0, 1: lcm.v1, 2: lcm.v2}.get(lcm.v)
    if body is None:
        raise LedgerDecodeError(f"LedgerCloseMeta version {lcm.v} is not supported")
    return body


def ledger_seq(lcm: xdr.LedgerCloseMeta) -> int:
    return _body(lcm).ledger_header.header.ledger_seq.uint32


def close_time(lcm: xdr.LedgerCloseMeta) -> datetime:
    seconds = _body(lcm).ledger_header.header.scp_value.close_time.time_point.uint64
    return datetime.fromtimestamp(seconds, tz=UTC)


def envelopes(lcm: xdr.LedgerCloseMeta) -> list[xdr.TransactionEnvelope]:
    """Every envelope of the ledger's transaction set (not in apply order)."""
    tx_set = _body(lcm).tx_set
    if lcm.v == 0:
        return list(tx_set.txs)
    out: list[xdr.TransactionEnvelope] = []
    for phase in tx_set.v1_tx_set.phases:
        if phase.v == 0:
            for comp in phase.v0_components:
                out.extend(comp.txs_maybe_discounted_fee.txs)
        else:
            for stage in phase.parallel_txs_component.execution_stages:
                for cluster in stage.parallel_tx_execution_stage:
                    out.extend(cluster.dependent_tx_cluster)
    return out


def tx_hash(env: xdr.TransactionEnvelope, network_id: bytes) -> bytes:
    """The transaction hash (sha256 of its signature payload) under `network_id`."""
    E = xdr.EnvelopeType
    if env.type == E.ENVELOPE_TYPE_TX_V0:
        # A V0 transaction hashes as the V1 form: a KEY_TYPE_ED25519 (0) muxed
        # source, then identical bytes (optional time bounds == PRECOND_NONE/TIME).
        payload = struct.pack(">i", E.ENVELOPE_TYPE_TX.value) + b"\x00\x00\x00\x00" + env.v0.tx.to_xdr_bytes()
    elif env.type == E.ENVELOPE_TYPE_TX:
        payload = struct.pack(">i", E.ENVELOPE_TYPE_TX.value) + env.v1.tx.to_xdr_bytes()
    elif env.type == E.ENVELOPE_TYPE_TX_FEE_BUMP:
        payload = struct.pack(">i", E.ENVELOPE_TYPE_TX_FEE_BUMP.value) + env.fee_bump.tx.to_xdr_bytes()
    else:
        raise LedgerDecodeError(f"unknown envelope type {env.type!r}")
    return hashlib.sha256(network_id + payload).digest()


def _inner(env: xdr.TransactionEnvelope) -> tuple[str, xdr.Memo, list]:
    """(source G..., memo, operations) of the transaction that carries the operations."""
    if env.type == xdr.EnvelopeType.ENVELOPE_TYPE_TX_V0:
        tx = env.v0.tx
        return _g(tx.source_account_ed25519.uint256), tx.memo, tx.operations
    if env.type == xdr.EnvelopeType.ENVELOPE_TYPE_TX_FEE_BUMP:
        tx = env.fee_bump.tx.inner_tx.v1.tx
    else:
        tx = env.v1.tx
    return muxed_str(tx.source_account), tx.memo, tx.operations


def _results(result: xdr.TransactionResult) -> tuple[bool, list | None]:
    """(successful, operation results) of a transaction result, unwrapping fee bumps."""
    res = result.result
    code = res.code
    if code in (xdr.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS, xdr.TransactionResultCode.txFEE_BUMP_INNER_FAILED):
        inner = res.inner_result_pair.result.result
        return code in _TX_OK, inner.results
    return code in _TX_OK, res.results


def _match_hashes(envs: list, wanted: set[bytes]) -> dict[bytes, xdr.TransactionEnvelope]:
    """Envelopes keyed by hash under the first known network whose hashes fit `wanted`."""
    for passphrase in PASSPHRASES:
        network_id = hashlib.sha256(passphrase.encode()).digest()
        by_hash = {tx_hash(env, network_id): env for env in envs}
        if wanted <= by_hash.keys():
            return by_hash
        if by_hash.keys() & wanted:  # right network, missing envelopes
            break
    raise LedgerDecodeError(
        f"{len(wanted)} results but their transaction envelopes do not match by hash under the "
        "public, testnet or futurenet passphrase: the ledger data is inconsistent or from another network"
    )


def applied_transactions(lcm: xdr.LedgerCloseMeta) -> Iterator[AppliedTx]:
    """The ledger's transactions in apply order, each with its envelope and result."""
    processing = _body(lcm).tx_processing
    if not processing:
        return
    by_hash = _match_hashes(envelopes(lcm), {p.result.transaction_hash.hash for p in processing})
    for index, proc in enumerate(processing, start=1):
        pair = proc.result
        source, memo, ops = _inner(by_hash[pair.transaction_hash.hash])
        ok, results = _results(pair.result)
        yield AppliedTx(
            index, pair.transaction_hash.hash.hex(), source, _memo_str(memo), ops, ok, results, proc.tx_apply_processing
        )


# -- fills -----------------------------------------------------------------------------

# Row layout of `_fills`, before the vectorised columns (pair, price) are added.
_FILL_COLUMNS = (
    "id",
    "op_id",
    "trade_type",
    "seller_account",
    "seller_offer_id",
    "seller_pool_id",
    "buyer_account",
    "buyer_offer_id",
    "sold_asset",
    "sold_amount",
    "bought_asset",
    "bought_amount",
)


def _atom_side(atom: xdr.ClaimAtom) -> tuple[str, str | None, int | None, str | None, object]:
    """(trade_type, seller account, seller offer id, seller pool id hex, inner atom)."""
    t = atom.type
    if t == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_LIQUIDITY_POOL:
        lp = atom.liquidity_pool
        return "liquidity_pool", None, None, lp.liquidity_pool_id.pool_id.hash.hex(), lp
    if t == xdr.ClaimAtomType.CLAIM_ATOM_TYPE_ORDER_BOOK:
        ob = atom.order_book
        return "orderbook", account_str(ob.seller_id), ob.offer_id.int64, None, ob
    v0 = atom.v0  # pre-protocol-13 results decode as V0 atoms
    return "orderbook", _g(v0.seller_ed25519.uint256), v0.offer_id.int64, None, v0


def _claims(tr: xdr.OperationResultTr) -> tuple[list, int | None] | None:
    """(claim atoms, the taker's remaining offer id or None) of a successful crossing result."""
    if tr.type in _OFFER_RESULTS:
        success = getattr(tr, _OFFER_RESULTS[tr.type]).success
        if success is None:
            return None
        kept = success.offer.offer
        return success.offers_claimed, (kept.offer_id.int64 if kept is not None else None)
    if tr.type in _PATH_RESULTS:
        success = getattr(tr, _PATH_RESULTS[tr.type]).success
        return (success.offers, None) if success is not None else None
    return None


def _fills(tx: AppliedTx, ledger: int) -> Iterator[tuple]:
    """Fill rows (layout `_FILL_COLUMNS`) of one successful transaction."""
    if not tx.successful or not tx.results:
        return
    for op_index, (op, result) in enumerate(zip(tx.operations, tx.results, strict=False), start=1):
        claims = _claims(result.tr) if result.tr is not None else None
        if not claims or not claims[0]:
            continue
        atoms, kept_offer = claims
        op_id = toid(ledger, tx.index, op_index)
        taker = muxed_str(op.source_account) if op.source_account is not None else tx.source
        buyer_offer = kept_offer if kept_offer else op_id | SYNTHETIC_OFFER_BIT
        for index, atom in enumerate(atoms):
            kind, seller, seller_offer, pool, inner = _atom_side(atom)
            sold, bought = inner.amount_sold.int64, inner.amount_bought.int64
            if sold == 0 and bought == 0:  # offers garbage-collected by core; Horizon skips them
                continue
            yield (
                f"{op_id}-{index}",
                op_id,
                kind,
                seller,
                seller_offer,
                pool,
                taker,
                buyer_offer,
                asset_str(inner.asset_sold),
                sold,
                asset_str(inner.asset_bought),
                bought,
            )


def fills_frame(rows: list[tuple], *, ledger: int, closed_at: datetime) -> pl.DataFrame:
    """Canonical trades from fill rows: adds ledger, closed_at, pair_id and the reduced price.

    Shapes: one row per fill; columns exactly `engine.schemas.TRADES_SCHEMA`.
    """
    raw = pl.DataFrame(rows, schema={c: TRADES_SCHEMA[c] for c in _FILL_COLUMNS}, orient="row")
    sold = raw["sold_amount"].to_numpy()
    bought = raw["bought_amount"].to_numpy()
    g = np.gcd(sold, bought)
    g[g == 0] = 1
    out = raw.with_columns(
        pl.lit(ledger, dtype=pl.Int64).alias("ledger"),
        pl.lit(closed_at, dtype=TRADES_SCHEMA["closed_at"]).alias("closed_at"),
        pair_id_expr("sold_asset", "bought_asset").alias("pair_id"),
        pl.Series("price_n", bought // g, dtype=pl.Int64),
        pl.Series("price_d", sold // g, dtype=pl.Int64),
        pl.lit(None, dtype=pl.String).alias("buyer_pool_id"),
        pl.lit(SOURCE).alias("source"),
    )
    return out.select(list(TRADES_SCHEMA))


# -- operations ------------------------------------------------------------------------


def _atom_inner(atom: xdr.ClaimAtom):
    return _atom_side(atom)[4]


def _strict_receive_sent(success) -> int:
    """Amount sent by a successful strict-receive path payment (Horizon's SendAmount)."""
    if not success.offers:
        return success.last.amount.int64
    first = asset_str(_atom_inner(success.offers[0]).asset_bought)
    inners = [_atom_inner(a) for a in success.offers]
    return sum(i.amount_bought.int64 for i in inners if asset_str(i.asset_bought) == first)


def _op_meta_changes(meta: xdr.TransactionMeta, op_index: int) -> list:
    body = meta.operations if meta.v == 0 else getattr(meta, f"v{meta.v}").operations
    if body is None or op_index > len(body):
        return []
    return body[op_index - 1].changes.ledger_entry_changes


def _claimed_balance(meta: xdr.TransactionMeta, op_index: int, balance_id: str) -> dict:
    """Asset, amount and sponsor (as from_account) of the claimable balance an op claimed."""
    for change in _op_meta_changes(meta, op_index):
        entry = change.state if change.type == xdr.LedgerEntryChangeType.LEDGER_ENTRY_STATE else None
        if entry is None or entry.data.type != xdr.LedgerEntryType.CLAIMABLE_BALANCE:
            continue
        cb = entry.data.claimable_balance
        if _balance_id(cb.balance_id) != balance_id:
            continue
        ext = entry.ext.v1 if entry.ext.v == 1 else None
        sponsor = ext.sponsoring_id.sponsorship_descriptor if ext is not None else None
        return {
            "asset": asset_str(cb.asset),
            "amount": cb.amount.int64,
            "from_account": account_str(sponsor) if sponsor is not None else None,
        }
    return {}


def _funding_fields(op: xdr.Operation, tr, tx: AppliedTx, op_index: int, source: str) -> dict | None:
    """Type-specific columns of a funding operation (None for other types); `from_account`
    defaults to the operation source `source`, `tr` is the result when the tx succeeded."""
    b, t = op.body, op.body.type
    if t == _T.CREATE_ACCOUNT:
        o = b.create_account_op
        return {"to_account": account_str(o.destination), "asset": NATIVE_ASSET, "amount": o.starting_balance.int64}
    if t == _T.PAYMENT:
        o = b.payment_op
        return {"to_account": muxed_str(o.destination), "asset": asset_str(o.asset), "amount": o.amount.int64}
    if t == _T.PATH_PAYMENT_STRICT_RECEIVE:
        o = b.path_payment_strict_receive_op
        ok = tr.path_payment_strict_receive_result.success if tr is not None else None
        return {
            "to_account": muxed_str(o.destination),
            "asset": asset_str(o.dest_asset),
            "amount": o.dest_amount.int64,
            "source_asset": asset_str(o.send_asset),
            "source_amount": _strict_receive_sent(ok) if ok is not None else None,
        }
    if t == _T.PATH_PAYMENT_STRICT_SEND:
        o = b.path_payment_strict_send_op
        ok = tr.path_payment_strict_send_result.success if tr is not None else None
        return {
            "to_account": muxed_str(o.destination),
            "asset": asset_str(o.dest_asset),
            "amount": ok.last.amount.int64 if ok is not None else None,
            "source_asset": asset_str(o.send_asset),
            "source_amount": o.send_amount.int64,
        }
    return _balance_fields(op, tr, tx, op_index, source)


def _balance_fields(op: xdr.Operation, tr, tx: AppliedTx, op_index: int, source: str) -> dict | None:
    """Account merge and claimable balances (see `_funding_fields`). A claim runs from the
    balance's sponsor (usually its creator, read from the meta) to the claimant."""
    b, t = op.body, op.body.type
    if t == _T.ACCOUNT_MERGE:
        res = tr.account_merge_result.source_account_balance if tr is not None else None
        return {
            "to_account": muxed_str(b.destination),
            "asset": NATIVE_ASSET,
            "amount": res.int64 if res is not None else None,
        }
    if t == _T.CREATE_CLAIMABLE_BALANCE:
        o = b.create_claimable_balance_op
        bid = tr.create_claimable_balance_result.balance_id if tr is not None else None
        first = o.claimants[0].v0.destination if o.claimants else None
        return {
            "to_account": account_str(first) if first is not None else None,
            "asset": asset_str(o.asset),
            "amount": o.amount.int64,
            "balance_id": _balance_id(bid) if bid is not None else None,
        }
    if t == _T.CLAIM_CLAIMABLE_BALANCE:
        bid = _balance_id(b.claim_claimable_balance_op.balance_id)
        found = _claimed_balance(tx.meta, op_index, bid) if tx.successful else {}
        return {"from_account": None, **found, "to_account": source, "balance_id": bid}
    return None


_OFFER_OPS = {  # operation type -> (body attribute, amount attribute)
    _T.MANAGE_SELL_OFFER: ("manage_sell_offer_op", "amount"),
    _T.MANAGE_BUY_OFFER: ("manage_buy_offer_op", "buy_amount"),
    _T.CREATE_PASSIVE_SELL_OFFER: ("create_passive_sell_offer_op", "amount"),
}


def _offer_fields(op: xdr.Operation) -> dict | None:
    """Manage sell / buy / passive offers: amount (the buy amount for manage_buy_offer), offer id
    (0 = new; passive offers have none), selling asset as `asset`, buying asset, price as given."""
    spec = _OFFER_OPS.get(op.body.type)
    if spec is None:
        return None
    o = getattr(op.body, spec[0])
    return {
        "asset": asset_str(o.selling),
        "buying_asset": asset_str(o.buying),
        "amount": getattr(o, spec[1]).int64,
        "offer_id": o.offer_id.int64 if hasattr(o, "offer_id") else 0,
        "price_n": o.price.n.int32,
        "price_d": o.price.d.int32,
    }


_TYPE_NAMES = {t: t.name.lower() for t in _T}


def _operation_rows(tx: AppliedTx, ledger: int, closed_at: datetime) -> Iterator[dict]:
    """OPERATIONS_SCHEMA rows of the funding and offer operations of one transaction."""
    for op_index, op in enumerate(tx.operations, start=1):
        result = tx.results[op_index - 1] if tx.results and op_index <= len(tx.results) else None
        tr = result.tr if result is not None and tx.successful else None
        source = muxed_str(op.source_account) if op.source_account is not None else tx.source
        fields = _offer_fields(op) or _funding_fields(op, tr, tx, op_index, source)
        if fields is None:
            continue
        row = {"from_account": source, **fields} if op.body.type in _FUNDING_OPS else fields
        yield {
            **row,
            "id": toid(ledger, tx.index, op_index),
            "ledger": ledger,
            "closed_at": closed_at,
            "type": _TYPE_NAMES[op.body.type],
            "tx_hash": tx.hash_hex,
            "successful": tx.successful,
            "source_account": source,
            "memo": tx.memo,
            "source": SOURCE,
        }


_FUNDING_OPS = frozenset(
    {
        _T.CREATE_ACCOUNT,
        _T.PAYMENT,
        _T.PATH_PAYMENT_STRICT_RECEIVE,
        _T.PATH_PAYMENT_STRICT_SEND,
        _T.ACCOUNT_MERGE,
        _T.CREATE_CLAIMABLE_BALANCE,
        _T.CLAIM_CLAIMABLE_BALANCE,
    }
)


# -- the ledger ------------------------------------------------------------------------


def decode_ledger(lcm: xdr.LedgerCloseMeta) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical (trades, operations) of one ledger.

    Shapes: trades — `engine.schemas.TRADES_SCHEMA`, one row per fill Horizon reports,
    ordered by id (op id, then fill index); operations — `OPERATIONS_SCHEMA`, one row per
    funding or manage-offer operation (failed transactions included, `successful` false).
    Raises LedgerDecodeError when the ledger's content cannot be interpreted.
    """
    ledger, closed_at = ledger_seq(lcm), close_time(lcm)
    fills: list[tuple] = []
    ops: list[dict] = []
    for tx in applied_transactions(lcm):
        fills.extend(_fills(tx, ledger))
        ops.extend(_operation_rows(tx, ledger, closed_at))
    return fills_frame(fills, ledger=ledger, closed_at=closed_at), operations_frame(ops)


def operations_frame(rows: Iterable[dict]) -> pl.DataFrame:
    """OPERATIONS_SCHEMA frame from operation row dicts (missing keys are null)."""
    return pl.from_dicts(list(rows), schema=OPERATIONS_SCHEMA)
