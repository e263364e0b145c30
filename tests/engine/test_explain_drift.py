"""SHAP explanations (exact and private), PSI drift, NSGA-II weights, `retrain-if-drifted` exit codes."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from engine.drift import is_drifted, pareto_weights, psi, psi_table, reference_bins
from engine.explain import PrivacyOptions, QueryBudget, ensemble_shap, explain_wallet, member_shap
from models.training import design_matrix, labels_from_simulator, synthetic_feature_frame, train_model
from storage.errors import BadInput

COLUMNS = ("counterparty_hhi", "flow_balance", "round_trip_rate", "ring_cp_share", "n_trades", "off_hours_ratio")


@pytest.fixture(scope="module")
def trained():
    features, labels = synthetic_feature_frame(n_wallets=200, n_snapshots=1, seed=4, columns=COLUMNS)
    result = train_model(features, labels_from_simulator(labels), seed=0, n_estimators=15, imbalance="class_weight",
                         refit=False, n_jobs=1)  # fmt: skip
    return result, features, labels


def test_ensemble_shap_is_additive(trained):
    result, features, _ = trained
    X = design_matrix(features, list(result.columns))[:40]
    base, contrib, points = ensemble_shap(result.model, X)
    np.testing.assert_allclose(base + contrib.sum(axis=1), points.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(points, result.model.member_probas(X) * 100, atol=1e-3)  # xgboost margins are float32
    raws = member_shap(result.model, X)
    assert [phi.shape for _, phi in raws] == [(40, len(result.columns))] * 3


def test_explain_wallet_top_factors(trained):
    result, features, labels = trained
    wallet = labels["account"][0]  # a wash wallet
    exp = explain_wallet(result.model, features, wallet, "P0", top=4)
    assert len(exp.contributions) == 4 and not exp.private
    shaps = [abs(c.shap) for c in exp.contributions]
    assert shaps == sorted(shaps, reverse=True)
    assert exp.score == pytest.approx(
        float(
            result.model.combined(
                design_matrix(
                    features.filter((pl.col("wallet") == wallet) & (pl.col("pair_id") == "P0")), list(result.columns)
                )
            )[0][0]
        )
    )
    by_name = {c.feature: c for c in exp.contributions}
    assert "counterparty_hhi" in by_name or "ring_cp_share" in by_name
    c = by_name.get("counterparty_hhi") or by_name["ring_cp_share"]
    col = features[c.feature].drop_nulls()
    assert c.population_percentile == pytest.approx(float((col <= c.value).sum()) / col.len() * 100)
    assert "(higher is more suspicious)" in c.description  # from engine.features.FEATURE_DICTIONARY
    feature, value, shap_points, description, pct = c  # a plain tuple too
    assert feature == c.feature and pct == c.population_percentile


def test_private_explanation_noise_and_budget(trained):
    result, features, labels = trained
    wallet = labels["account"][0]
    budget = QueryBudget(total_epsilon=2.0)
    opts = PrivacyOptions(epsilon=1.0, delta=1e-5, seed=3)
    exact = explain_wallet(result.model, features, wallet, "P0", top=len(COLUMNS))
    noisy = explain_wallet(result.model, features, wallet, "P0", top=len(COLUMNS), privacy=opts, budget=budget)
    again = explain_wallet(result.model, features, wallet, "P0", top=len(COLUMNS), privacy=opts, budget=budget)
    assert noisy.private and all(c.value is None and c.population_percentile is None for c in noisy.contributions)
    assert {c.feature: c.shap for c in noisy.contributions} == {c.feature: c.shap for c in again.contributions}
    assert {c.feature: c.shap for c in noisy.contributions} != {c.feature: c.shap for c in exact.contributions}
    assert budget.spent == {wallet: 2.0}
    with pytest.raises(BadInput, match="privacy budget of wallet"):
        explain_wallet(result.model, features, wallet, "P0", privacy=opts, budget=budget)


def test_psi_values():
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert psi([0.5, 0.5, 0.0], [0.25, 0.75, 0.0]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=2000), rng.normal(size=2000)])
    ref = reference_bins(X, ["a", "b"])
    assert len(ref["a"]["edges"]) == 9 and sum(ref["a"]["props"]) == pytest.approx(1.0)
    same = pl.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    table = psi_table(ref, same)
    assert table["status"].to_list() == ["stable", "stable"] and not is_drifted(table)
    moved = pl.DataFrame(
        {"a": rng.normal(1.0, 1.0, 2000), "b": [None] * 2000}, schema={"a": pl.Float64, "b": pl.Float64}
    )
    table = psi_table(ref, moved).sort("feature")
    assert table["status"].to_list() == ["drifted", "drifted"] and is_drifted(table)
    assert table["missing_now"].to_list() == [0.0, 1.0]
    assert psi_table(ref, same.drop("b")).filter(pl.col("feature") == "b")["status"].to_list() == ["absent"]


def test_pareto_weights_front():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)
    points = np.column_stack([y * 50 + rng.uniform(30, 45, 300), y * 30 + rng.uniform(40, 60, 300),
                              y * 20 + rng.uniform(45, 60, 300)])  # fmt: skip
    shap = [rng.normal(size=(300, 5)) * np.array([5, 4, 3, 2, 1]) * (j + 1) for j in range(3)]
    front = pareto_weights(points, y, shap, pop_size=16, n_gen=8, seed=0)
    assert front.columns == ["w_0", "w_1", "w_2", "precision", "recall", "shap_stability"]
    np.testing.assert_allclose(front.select("w_0", "w_1", "w_2").sum_horizontal().to_numpy(), 1.0)
    F = front.select("precision", "recall", "shap_stability").to_numpy()
    dominated = [(F >= f).all(axis=1) & (F > f).any(axis=1) for f in F]
    assert not any(d.any() for d in dominated)  # a Pareto front: no point beats another on every objective
    assert front["precision"].max() == 1.0  # member 0 alone separates the classes at 70
    perfect = pareto_weights(np.column_stack([y * 90 + 5] * 3).astype(float), y, shap, pop_size=8, n_gen=3, seed=0)
    assert set(perfect["precision"].to_list()) == {1.0} and set(perfect["recall"].to_list()) == {1.0}


def test_retrain_if_drifted_exit_codes(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from engine.ingest.files import ingest_files
    from engine.synthetic import generate_market
    from models.registry import current_version, list_versions
    from storage.store import Store

    monkeypatch.setenv("LEDGERLENS_HOME", str(tmp_path / "home"))
    db = tmp_path / "s.duckdb"
    assert main(["retrain-if-drifted", "--db", str(db)]) == 1  # no model: an error, said so
    assert "no model" in capsys.readouterr().err
    market = generate_market(tmp_path / "m", seed=5, scale=0.1, days=7)
    with Store(db) as s:
        ingest_files(s, [market.trades_path, market.operations_path])
    opts = ["--db", str(db), "--labels", str(market.labels_path), "--n-estimators", "10", "--imbalance", "class_weight"]
    assert main(["train", *opts]) == 0
    models_dir = tmp_path / "home" / "models"
    first = current_version(models_dir)
    assert main(["retrain-if-drifted", *opts]) == 0  # scored data = training reference
    assert "no drift" in capsys.readouterr().out
    with Store(db) as s:  # the market changes: trade counts x 20
        s.save_derived("features", s.load_derived("features").with_columns(pl.col("n_trades") * 20))
    code = main(["retrain-if-drifted", *opts])
    versions = list_versions(models_dir)
    assert code in (2, 3) and len(versions) == 2
    assert current_version(models_dir) == (versions[0]["version"] if code == 2 else first)
    assert (models_dir / first / "model.pkl").exists()  # archived, never overwritten
