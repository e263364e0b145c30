"""The feature dictionary: what every column of the feature matrix means.

SHAP explanations, the Wallet page and the forensic report read it. Each entry
is name -> FeatureInfo(description, unit, direction, missing). `missing` names
the indicator column that is True where the value is null (None: never null).
Features that go missing together share one indicator (`<group>_missing`), so
the matrix holds no duplicated indicator columns.
"""

from __future__ import annotations

from dataclasses import dataclass

HIGHER = "higher is more suspicious"
LOWER = "lower is more suspicious"
CONTEXT = "context: not suspicious by itself"


@dataclass(frozen=True)
class FeatureInfo:
    description: str
    unit: str
    direction: str
    missing: str | None  # indicator column, or None when the feature is never null


WINDOW_NAMES = ("1h", "4h", "24h", "7d", "30d")


def _benford(window: str) -> dict[str, FeatureInfo]:
    ind = f"benford_{window}_missing"
    return {
        f"benford_excess_mad_{window}": FeatureInfo(
            f"First-digit Benford MAD of the wallet's base amounts in the pair over the last {window}, minus the MAD "
            "a genuine Benford sample of that size shows by chance (so small samples are not penalised); "
            "null below benford.MIN_N['first'] (50) amounts.",
            "proportion", HIGHER, ind,
        ),
        f"benford_neglog_p_{window}": FeatureInfo(
            f"-log10 of the first-digit chi-square p-value (df 8) over the last {window}, capped at 300: how "
            "surely the digits are not Benford's, given the sample size.",
            "-log10(p)", HIGHER, ind,
        ),
        f"benford_ks_{window}": FeatureInfo(
            f"Kolmogorov-Smirnov distance between the observed and Benford first-digit cumulative proportions "
            f"over the last {window}.",
            "proportion", HIGHER, ind,
        ),
    }  # fmt: skip


def _f(description: str, unit: str, direction: str, missing: str | None = None) -> FeatureInfo:
    return FeatureInfo(description, unit, direction, missing)


FEATURE_DICTIONARY: dict[str, FeatureInfo] = {
    **{k: v for w in WINDOW_NAMES for k, v in _benford(w).items()},
    "n_trades": _f("Trades of the wallet in the pair over the lookback (default 30 days).", "trades", CONTEXT),
    "counterparty_hhi": _f(
        "Herfindahl index of the wallet's trade counts across its counterparties in the pair: 1 = always the same one.",
        "index 0-1", HIGHER),
    "volume_per_counterparty": _f(
        "Base-asset volume traded in the pair divided by the number of distinct counterparties.",
        "base units per counterparty", HIGHER),
    "net_flow_ratio": _f(
        "(base bought - base sold) / (bought + sold), from who sold what: +1 only buys, -1 only sells.",
        "ratio -1..1", CONTEXT),
    "flow_balance": _f(
        "1 - |net_flow_ratio|: 1 when the wallet bought exactly what it sold (no net position, typical of wash trades).",
        "ratio 0-1", HIGHER),
    "fixed_lot_share": _f(
        "Share of the wallet's trades in the pair with its single most common base amount (fixed-lot bots); "
        "null under 5 trades.", "share 0-1", HIGHER, "shape_missing"),
    "round_number_share": _f(
        "Share of trades whose base amount is a whole number with at most two significant digits (100, 250, 5000); "
        "null under 5 trades.", "share 0-1", HIGHER, "shape_missing"),
    "off_hours_ratio": _f(
        "Share of the wallet's trades in the pair during the market's 6 quietest UTC hours (as of t); "
        "null under 5 trades.", "share 0-1", HIGHER, "shape_missing"),
    "intra_minute_share": _f(
        "Share of the wallet's trades in the pair within 60 s of another of its trades in the pair; null under 2 trades.",
        "share 0-1", HIGHER, "intra_minute_share_missing"),
    "inter_arrival_cv": _f(
        "Coefficient of variation of the gaps between the wallet's consecutive trades in the pair; low = metronomic "
        "bot timing; null under 3 trades or when all trades share one second.",
        "ratio", LOWER, "inter_arrival_cv_missing"),
    "volume_spike_ratio": _f(
        "Largest daily base volume divided by the mean daily volume of the 7 days before it; null when no day "
        "has a baseline.", "ratio", HIGHER, "volume_spike_ratio_missing"),
    "size_tail_exponent": _f(
        "Hill estimator of the upper-tail exponent of the wallet's trade sizes in the pair (k = sqrt(n) top amounts); "
        "organic sizes are heavy-tailed (small exponent), scripted sizes thin-tailed; null under 10 trades or "
        "without a tail.", "exponent", HIGHER, "size_tail_exponent_missing"),
    "round_trip_rate": _f(
        "Share of the wallet's gives in the pair after which the same asset came back to it within 100 ledgers "
        "with an amount within 1 % (true round trips).", "share 0-1", HIGHER),
    "offer_cancel_rate": _f(
        "Share of the wallet's manage-offer operations in the pair that delete an offer (amount 0.0000000); "
        "null when it placed no offers there (e.g. pool-only trading).",
        "share 0-1", HIGHER, "offer_cancel_rate_missing"),
    "account_age_days": _f(
        "Days between the account's creation and t; null when the creation is not in the data.",
        "days", LOWER, "account_age_days_missing"),
    "same_controller_rate": _f(
        "Share of the wallet's trades with accounts in the pair whose counterparty shares a funding ancestor "
        "within 4 hops (or is one); exchange-like hubs (>100 funded accounts) do not count.",
        "share 0-1", HIGHER, "funding_missing"),
    "funding_similarity": _f(
        "Trade-weighted mean Jaccard similarity of the wallet's and its counterparties' funding lineages "
        "(self + non-hub ancestors within 4 hops).", "similarity 0-1", HIGHER, "funding_missing"),
    "pagerank": _f(
        "PageRank of the wallet in the co-trade graph of all pairs (accounts only, trade-count weights), "
        "scaled so the mean wallet is 1.", "relative rank", CONTEXT),
    "pair_diversity": _f(
        "Shannon entropy of the wallet's trades across pairs (0 = one pair).", "nats", CONTEXT),
    "cross_pair_synchrony": _f(
        "Share of the wallet's trades in the pair within 60 s of one of its trades in another pair; "
        "null for single-pair wallets.", "share 0-1", HIGHER, "cross_pair_missing"),
    "cross_pair_cp_overlap": _f(
        "Jaccard overlap between the pair's counterparties and those of the wallet's other pairs; "
        "null for single-pair wallets.", "share 0-1", HIGHER, "cross_pair_missing"),
    "cross_pair_volume_corr": _f(
        "Correlation of the wallet's hourly trade counts in the pair and in its other pairs over the lookback; "
        "null for single-pair wallets or flat series.", "correlation -1..1", HIGHER, "cross_pair_missing"),
    "cross_pair_mad_spread": _f(
        "Max - min across the wallet's pairs of the 30-day first-digit Benford excess MAD; a wallet conforming in "
        "one pair and not in another; null unless two pairs have >= 50 amounts.",
        "proportion", HIGHER, "cross_pair_mad_spread_missing"),
    "ring_size": _f(
        "Members of the wallet's ring (engine.graph.rings), 0 when in no ring; null when rings were not computed.",
        "accounts", HIGHER, "ring_missing"),
    "loop_share": _f(
        "Share of the wallet's trades in the pair inside a closed loop (a strongly connected set of wallets whose "
        "net positions stay flat over 1h/1d/1w; Victor & Weintraud 2021); null when loops were not computed.",
        "share 0-1", HIGHER, "loops_missing"),
    "ring_cp_share": _f(
        "Share of the wallet's trades in the pair whose counterparty is in the same ring; null when rings were "
        "not computed.", "share 0-1", HIGHER, "ring_missing"),
}  # fmt: skip

FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DICTIONARY)
MISSING_INDICATORS: tuple[str, ...] = tuple(dict.fromkeys(i.missing for i in FEATURE_DICTIONARY.values() if i.missing))


def describe(name: str) -> FeatureInfo:
    """The dictionary entry of a feature or a missing indicator."""
    if name in FEATURE_DICTIONARY:
        return FEATURE_DICTIONARY[name]
    if name in MISSING_INDICATORS:
        of = [f for f, i in FEATURE_DICTIONARY.items() if i.missing == name]
        return FeatureInfo(f"True where {', '.join(of)} cannot be computed (null).", "bool", CONTEXT, None)
    raise KeyError(f"unknown feature {name!r}")
