"""The report's tables as plain text cells, shared by the PDF and Markdown renderers.

Cells are UNESCAPED text (ledger strings as they came); each renderer escapes
them for its own markup. Sections that are not available become one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

DASH = "-"


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def cell(value) -> str:
    """Plain text of a report value: floats to 4 significant digits, None as '-'."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value + 0.0:.4g}"  # + 0.0 turns -0.0 into 0.0: never "-0"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return str(value)


def short(account: str | None) -> str:
    """GABC...WXYZ: first and last four characters of a long id."""
    if account is None:
        return DASH
    return account if len(account) <= 12 else f"{account[:4]}...{account[-4:]}"


def unavailable(section: dict) -> str | None:
    """The 'not available' sentence of a section, or None when it is available."""
    return None if section.get("available", True) else f"Not available: {section['reason']}"


def _t(title, headers, rows, note="") -> Table:
    return Table(title, tuple(headers), tuple(tuple(cell(v) for v in r) for r in rows), note)


def header_table(report: dict) -> Table:
    h = report["header"]
    model = h.get("model") or {}
    score = DASH if h.get("score") is None else f"{h['score']:.1f} / 100" + (" (flagged)" if h.get("flagged") else "")
    rows = [
        ("Wallet", h["wallet"]), ("Pair", h["pair_id"]),
        ("Risk score", score if h.get("score") is not None else h.get("score_note", DASH)),
        ("Benford flag", h.get("benford_flag")), ("ML flag", h.get("ml_flag")),
        ("Confidence", h.get("confidence")), ("Ring", h.get("ring_id")),
        ("BFT divergence", h.get("bft_divergence")), ("Score as of (ledger close, UTC)", utc_text(h.get("score_timestamp"))),
        ("Model version", model.get("version")), ("Feature-schema hash", model.get("feature_schema_hash") or
                                                  model.get("note")),
        ("Generated at (= as of)", h["generated_at"]), ("LedgerLens version", h["ledgerlens_version"]),
    ]  # fmt: skip
    return _t("Summary", ("Field", "Value"), rows)


def wallet_legs(row: dict, base: str) -> tuple[str, str, str]:
    """(side, what the wallet gave, what it got) of a trade row, read from the wallet's side: the row is stored
    seller/buyer, and `side` says whether the wallet sold or bought the pair's base asset."""
    legs = [(row["sold_asset"], row["sold_amount"]), (row["bought_asset"], row["bought_amount"])]
    base_leg = next(leg for leg in legs if leg[0] == base) if any(a == base for a, _ in legs) else legs[0]
    other = legs[1] if base_leg is legs[0] else legs[0]
    gave, got = (base_leg, other) if row["side"] == "sold base" else (other, base_leg)
    verb = "sold" if row["side"] == "sold base" else "bought"
    return f"{verb} {base.partition(':')[0]}", f"{gave[1]} {short_asset(gave[0])}", f"{got[1]} {short_asset(got[0])}"


def trades_table(report: dict) -> Table:
    s = report["anomalous_trades"]
    base = report["header"]["pair_id"].split("/")[0]
    rows = [(r["rank"], r["closed_at"].replace("T", " ").rstrip("Z"), *_side_first(wallet_legs(r, base), r),
             r["points"], "; ".join(r["reasons"]), r["horizon_url"]) for r in s["rows"]]  # fmt: skip
    counts = ", ".join(f"{k} {v}" for k, v in s["signal_counts"].items())
    note = (f"{len(s['rows'])} of {s['n_trades']} trades; {s['selection_rule']}. Side, gave and got are the "
            f"wallet's own; times UTC. Trades per signal: {counts}.")
    return _t("Most anomalous trades", ("#", "Closed at (UTC)", "Wallet", "Counterparty", "Wallet gave",
                                        "Wallet got", "Pts", "Why", "Horizon"), rows, note)  # fmt: skip


def _side_first(legs: tuple[str, str, str], row: dict) -> tuple[str, str, str, str]:
    side, gave, got = legs
    return side, short(row["counterparty"]), gave, got


def utc_text(unix_s) -> str | None:
    """A ledger close time given in unix seconds as an ISO-8601 UTC date and time."""
    if unix_s is None:
        return None
    return datetime.fromtimestamp(int(unix_s), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_asset(asset: str) -> str:
    code, _, issuer = asset.partition(":")
    return code if issuer in ("native", "") else f"{code}:{short(issuer)}"


def shap_table(report: dict) -> Table:
    s = report["attributions"]["shap"]
    if not s.get("available", True):
        return _t("SHAP attributions", (), (), unavailable(s))
    rows = [(c["feature"], c["value"], f"{round(c['shap'], 2) + 0.0:+.2f}", c["population_percentile"], c["description"])
            for c in s["contributions"]]  # fmt: skip
    note = (f"Model {s['model_version']}: score {s['score']:.1f} = base {s['base_value']:.1f} + contributions "
            f"(in {s['unit']}); member scores {', '.join(f'{m:.1f}' for m in s['member_scores'])}.")
    return _t("SHAP attributions", ("Feature", "Wallet value", "Points", "Pop. pctl", "Meaning"), rows, note)


def feature_table(report: dict) -> Table:
    f = report["attributions"]["features"]
    if not f.get("available", True):
        return _t("Wallet vs population", (), (), unavailable(f))
    rows = [(r["feature"], r["value"], r["population_median"], f"{r['percentile']:.0f}", r["direction"],
             r["description"]) for r in f["rows"]]  # fmt: skip
    note = f"Population: {f['population']} ({f['n_population']} rows, snapshot {cell(f['as_of'])})."
    return _t("Wallet vs population", ("Feature", "Wallet", "Pop. median", "Pctl", "Direction", "Meaning"), rows, note)


def benford_table(report: dict) -> Table:
    b = report["benford"]
    if not b.get("available", True):
        return _t("Benford analysis", (), (), unavailable(b))
    rows = [(w["window"], w["end"], w["n"], w["mad"], w["mad_class"], w["excess_mad"], w["p_value"], w["verdict"])
            for w in b["windows"]]  # fmt: skip
    note = f"{b['test']}. Amounts: {b['amounts']}. Statistics need n >= {b['min_n']}; windows end at the last trade."
    return _t("Benford analysis", ("Window", "Ends", "n", "MAD", "MAD class", "Excess MAD", "p-value", "Verdict"),
              rows, note)  # fmt: skip


def lineage_tables(report: dict) -> list[Table]:
    g = report["lineage"]
    if not g.get("available", True):
        return [_t("Funding lineage", (), (), unavailable(g))]
    acct = g.get("account") or {}
    if acct.get("created_at") is not None:
        created = (f"Account created {cell(acct['created_at'])} by {cell(acct.get('funder'))} with "
                   f"{cell(acct.get('starting_balance'))} XLM.")  # fmt: skip
    else:
        created = "Creation date unknown: the account's creation is not in the ingested ledgers."
    note = f"{created} {g['rule']}."
    incoming = [(r["closed_at"], r["type"].replace("_", " "), r["from_account"], f"{r['amount']} {short_asset(r['asset'] or '-')}",
                 r["memo"], r["horizon_url"]) for r in g["incoming_funding"]]  # fmt: skip
    ancestors = [(r["ancestor"], r["depth"], r["exchange_like"]) for r in g["ancestors"]]
    shared = [(r["ancestor"], r["n_members"], r["depth"], r["exchange_like"]) for r in g["shared_ring_ancestors"]]
    return [
        _t("Funding into the wallet", ("Closed at", "Type", "From", "Amount", "Memo", "Horizon"), incoming, note),
        _t("Funding ancestors of the wallet", ("Ancestor", "Hops", "Exchange-like"), ancestors),
        _t("Ancestors shared by ring members", ("Ancestor", "Members funded", "Min hops", "Exchange-like"), shared),
    ]


def ring_tables(report: dict) -> list[Table]:
    r = report["ring"]
    if not r.get("available", True):
        return [_t("Ring", (), (), unavailable(r))]
    if r.get("ring_id") is None:
        return [_t("Ring", (), (), r.get("note", "The wallet is in no detected ring."))]
    stats = r["stats"]
    stat_rows = [(k, v) for k, v in stats.items()] if stats.get("available", True) else [("stats", unavailable(stats))]
    base = short_asset(r.get("pair_base") or report["header"]["pair_id"].split("/")[0])
    members = [(m["account_id"], m.get("n_trades"), m.get("pair_volume")) for m in r["members"]]
    return [
        _t(f"Ring {r['ring_id']}", ("Statistic", "Value"), stat_rows),
        _t("Ring members", ("Account", "Internal trades (all pairs)", f"Volume with members, this pair ({base})"),
           members, f"Volumes in {base} units: the member's trades with other ring members in the report's pair."),
    ]


def annotation_table(report: dict) -> Table:
    rows = [(a["annotated_at"], a["annotator_id"], a["label"], a["label_source"], a["note"])
            for a in report["annotations"]]  # fmt: skip
    return _t("Analyst annotations", ("When", "Who", "Label", "Source", "Note"), rows,
              "" if rows else "No annotation of this wallet at or before the report time.")


def provenance_tables(report: dict) -> list[Table]:
    p = report["provenance"]
    q, t = p["query"], p["trades"]
    rows = [("Query", ", ".join(f"{k}={cell(v)}" for k, v in q.items())),
            ("Trade rows used", t["n_rows"]), ("SHA-256 of trade rows", t["sha256"]),
            ("Trade serialisation", t["serialisation"]),
            ("Ledger range", f"{cell(t['first_ledger'])} - {cell(t['last_ledger'])}"),
            ("Time range", f"{cell(t['first_closed_at'])} - {cell(t['last_closed_at'])}"),
            ("Ring trade rows / SHA-256", f"{p['ring_trades']['n_rows']} / {p['ring_trades']['sha256']}"),
            ("Funding edges considered", p["funding"]["n_edges"]), ("Annotations", p["n_annotations"])]  # fmt: skip
    runs = [(r["run_id"], r["source"], r["status"], r["started_at"], r["n_trades"], r["n_operations"],
             r["n_quarantined"], ", ".join(f"{k}={cell(v)}" for k, v in sorted(r["params"].items())))
            for r in p["ingest_runs"]]  # fmt: skip
    return [
        _t("Provenance", ("Item", "Value"), rows),
        _t("Sources ingested", ("Run", "Source", "Status", "Started", "Trades", "Ops", "Quarantined", "Parameters"),
           runs),
    ]


def signature_table(attestation) -> Table:
    """Who signed the report: algorithm, raw public key, its SHA-256 fingerprint, the signature (text as recorded).

    Tolerates any shape (a tampered file is rendered to be compared, never trusted)."""
    if attestation is None:
        return _t("Signature", (), (), "Not signed: this report proves no origin (see the verification section).")
    a = attestation if isinstance(attestation, dict) else {}
    rows = [("Algorithm", a.get("algorithm")), ("Public key (raw, hex)", a.get("public_key")),
            ("Key fingerprint (SHA-256 of the public key)", a.get("key_fingerprint")),
            ("Signature (hex)", a.get("signature"))]  # fmt: skip
    return _t("Signature", ("Field", "Value"), [(k, v if isinstance(v, str) else None) for k, v in rows])
