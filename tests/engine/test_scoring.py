"""Scoring: RiskScore rows from features, one path for batch and one wallet, history, the CLI."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engine.scoring import SCORE_COLUMNS, benford_flags, combined_score, evidence_points, score_features, score_wallet
from models import signing
from models.registry import load_version, save_version
from models.training import labels_from_simulator, synthetic_feature_frame, train_model
from storage.errors import ModelIntegrityError, NotFound

COLUMNS = ("counterparty_hhi", "flow_balance", "round_trip_rate", "benford_neglog_p_30d", "benford_excess_mad_30d")


@pytest.fixture(scope="module")
def frames():
    return synthetic_feature_frame(n_wallets=160, n_snapshots=2, seed=11, columns=COLUMNS)


@pytest.fixture(scope="module")
def loaded(frames, tmp_path_factory):
    features, labels = frames
    result = train_model(features, labels_from_simulator(labels), seed=0, n_estimators=10, imbalance="class_weight",
                         n_jobs=1)  # fmt: skip
    tmp = tmp_path_factory.mktemp("reg")
    key = signing.load_or_create_key(tmp / "k.pem")
    save_version(
        tmp / "models", result.model, metadata=result.metadata, drift_reference=result.drift_reference, key=key
    )
    return load_version(
        tmp / "models", trusted_fingerprints=frozenset({signing.fingerprint(signing.public_bytes(key))})
    )


def test_score_rows_follow_the_contract(loaded, frames):
    features, labels = frames
    rings = pl.DataFrame({"account_id": [labels["account"][0], labels["account"][0]], "ring_id": ["ring_b", "ring_a"]})
    scores = score_features(loaded, features, ring_members=rings, flag_threshold=70)
    assert tuple(scores.columns) == SCORE_COLUMNS and scores.height == features.height
    assert scores["score"].dtype == pl.Float64 and (scores["score"] * 10).round(6).eq((scores["score"] * 10).round(0)).all() and scores["score"].min() >= 0 and scores["score"].max() <= 100
    model = loaded.model.combined(features.select(loaded.feature_columns).to_numpy())[0]
    assert (scores["ml_flag"] == pl.Series(np.floor(model + 0.5) >= 70)).all()  # the model's own verdict
    assert scores["timestamp"].unique().sort().to_list() == [1704672000, 1705276800]  # the two as_of, unix s
    assert scores["model_version"].unique().to_list() == [loaded.version]
    assert scores.filter(pl.col("ring_id").is_not_null())["wallet"].unique().to_list() == [labels["account"][0]]
    assert scores.filter(pl.col("ring_id").is_not_null())["ring_id"].unique().to_list() == ["ring_a"]
    assert ((scores["confidence"] >= 0) & (scores["confidence"] <= 100)).all()
    # scores add the model's points (probability x 80) and the mechanism points, mapped 70 points -> 70
    points = evidence_points(features)
    total = 0.8 * model + points["loop_points"].to_numpy() + points["ring_points"].to_numpy() + points["controller_points"].to_numpy() + points["weak_points"].to_numpy()
    knee = 70 + 28 / 0.18
    mapped = np.where(total <= 70, 100 * (1 - np.exp(-total * np.log(1 / 0.3) / 70)),
                      np.where(total <= knee, 70 + 0.18 * (total - 70), 98 + 1.9 * (1 - np.exp(-(total - knee) / 40))))
    np.testing.assert_allclose(scores["score"].to_numpy(), mapped, atol=0.05 + 1e-9)  # rounded to one decimal
    wash = scores.join(labels.rename({"account": "wallet"}), on="wallet")
    assert (
        wash.filter(pl.col("is_wash") == 1)["score"].mean() > wash.filter(pl.col("is_wash") == 0)["score"].mean() + 20
    )


def test_single_wallet_is_the_batch_path(loaded, frames):
    features, labels = frames
    wallet = labels["account"][3]
    batch = score_features(loaded, features).filter(pl.col("wallet") == wallet).sort("pair_id", "timestamp")
    one = score_wallet(loaded, features, wallet).sort("pair_id", "timestamp")
    assert one.rows() == batch.rows() and one.height == 4
    assert score_wallet(loaded, features, wallet, pair_id="P1").height == 2
    with pytest.raises(NotFound, match="no feature row for wallet GX"):
        score_wallet(loaded, features, "GX")


def test_schema_mismatch_names_columns(loaded, frames):
    features, _ = frames
    with pytest.raises(ModelIntegrityError, match=r"missing \['flow_balance'\], extra \['surprise'\]"):
        score_features(loaded, features.drop("flow_balance").with_columns(surprise=pl.lit(1.0)))


def test_benford_flag_rule_from_features_and_table():
    features = pl.DataFrame({
        "wallet": ["a", "b", "c"], "pair_id": ["P", "P", "P"],
        "benford_neglog_p_30d": [5.0, 5.0, None], "benford_excess_mad_30d": [0.02, 0.01, None],
    })  # fmt: skip
    assert benford_flags(features).sort("wallet")["benford_flag"].to_list() == [True, False, None]
    table = pl.DataFrame({
        "scope": ["wallet_pair", "wallet_pair", "wallet"], "test": ["first", "first", "first"],
        "window": ["30d", "7d", "30d"], "wallet": ["b", "a", "a"], "pair_id": ["P", "P", None], "flag": [True, True, True],
    })  # fmt: skip
    assert benford_flags(features, table).rows() == [("b", "P", True)]


def test_scores_history_in_store(loaded, frames, store):
    features, labels = frames
    wallet = labels["account"][0]
    first = score_wallet(loaded, features.filter(pl.col("as_of") == pl.col("as_of").min()), wallet)
    second = score_wallet(loaded, features.filter(pl.col("as_of") == pl.col("as_of").max()), wallet)
    assert store.append_scores(first) == 2 and store.append_scores(second) == 2
    assert store.score_history(wallet).height == 4
    latest = store.latest_scores(wallet=wallet).sort("pair_id")
    assert latest["timestamp"].to_list() == [1705276800, 1705276800]


def _simulated_store(db, tmp_path):
    """A small simulated market (engine.synthetic) ingested into `db`; returns (labels.csv, wash accounts)."""
    from engine.ingest.files import ingest_files
    from engine.synthetic import generate_market
    from storage.store import Store

    market = generate_market(tmp_path / "market", seed=3, scale=0.1, days=7)
    with Store(db) as s:
        ingest_files(s, [market.trades_path, market.operations_path])
    labels = pl.read_csv(market.labels_path, schema_overrides={"ring_id": pl.String})
    return market.labels_path, labels.filter(pl.col("is_wash") == 1)["account"].to_list()


def test_cli_score_trains_first_and_writes_csv(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from storage.store import Store

    monkeypatch.setenv("LEDGERLENS_HOME", str(tmp_path / "home"))
    db = tmp_path / "s.duckdb"
    labels_csv, wash_accounts = _simulated_store(db, tmp_path)
    out = tmp_path / "scores.csv"
    code = main(["score", "--db", str(db), "--out", str(out), "--labels", str(labels_csv), "--n-estimators", "10"])
    err = capsys.readouterr().err
    assert code == 0 and "no model yet: training the default model first" in err
    csv = pl.read_csv(out)
    assert tuple(csv.columns) == SCORE_COLUMNS
    with Store(db, read_only=True) as s:
        assert s.load_derived("features").height == csv.height  # features computed first
        assert s.load_derived("ring_members") is not None  # rings too
        assert s.latest_scores().height == csv.height
    wash = csv.filter(pl.col("wallet").is_in(wash_accounts))
    assert wash.height > 0 and wash["score"].mean() > csv["score"].mean() + 30
    one = wash["wallet"][0]
    assert main(["score", "--db", str(db), "--wallet", one]) == 0
    assert "scored with v" in capsys.readouterr().out
    with Store(db, read_only=True) as s:
        # same data, same model: re-scoring replaces (the history grows with new as_of or model versions)
        assert s.score_history(one).height == wash.filter(pl.col("wallet") == one).height


def test_weak_signals_order_the_quiet_wallets_and_never_flag_one():
    """Wallets with no mechanism and no model probability are ordered by concentration x flatness and
    Benford excess MAD, within 3 points (a score of 5): no wall of 0.0, and no flag from weak signals."""
    quiet = pl.DataFrame({
        "wallet": ["a", "b", "c", "d"], "pair_id": ["P"] * 4, "n_trades": [40.0] * 4,
        "counterparty_hhi": [0.05, 0.5, 1.0, 1.0], "flow_balance": [0.2, 0.9, 1.0, 1.0],
        "benford_excess_mad_30d": [None, 0.0, 0.02, 0.5],
    })  # fmt: skip
    points = evidence_points(quiet)
    weak = points["weak_points"].to_list()
    assert weak == sorted(weak) and len(set(weak)) == 4 and weak[0] > 0 and weak[-1] == pytest.approx(3.0)
    assert points.select("loop_points", "ring_points", "controller_points").sum_horizontal().eq(0).all()
    scores = combined_score(np.zeros(4), points)
    assert (np.diff(scores) > 0).all() and scores.max() == pytest.approx(100 * (1 - np.exp(-3 / (70 / np.log(1 / 0.3)))))
    assert scores.max() < 5.1
