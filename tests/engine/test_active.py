"""engine.active: signed annotations, export/import, the queue strategies, evidence, retraining."""

from __future__ import annotations

import hashlib
import hmac
import stat
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from engine.active.annotations import (
    ANNOTATION_SCHEMA,
    REASON_LEGACY,
    REASON_MISMATCH,
    annotation_row,
    export_annotations,
    import_annotations,
    load_or_create_key,
    read_annotation_file,
    sign,
    sign_legacy,
    verify_annotations,
)  # fmt: skip
from engine.active.queue import committee, evidence_boost, rank_queue, uncertainty, vote_entropy
from engine.cli import main
from engine.services.label import build_queue, record_label, unlabelled
from engine.settings import Settings

KEY = b"k" * 32
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)  # microsecond 0: isoformat has no fraction


def _settings(tmp_path, **extra) -> Settings:
    return Settings(home=tmp_path / "home", db=tmp_path / "s.duckdb").model_copy(update=extra)


def _rows(n: int = 3) -> pl.DataFrame:
    return pl.concat([
        annotation_row(wallet=f"GW{i}", pair_id="A/B" if i % 2 else None, label=("wash", "legit", "unsure")[i % 3],
                       note=f"n{i}", annotator_id="ana", key=KEY, now=T0 + timedelta(microseconds=i * 7))
        for i in range(n)
    ])  # fmt: skip


# -- HMAC ---------------------------------------------------------------------------------------------


def test_hmac_is_sha256_over_every_field_of_the_label():
    message = b'ledgerlens-annotation-v2\n["GW0","A/B","wash","lots","ana","2024-05-01T12:00:00+00:00"]'
    expected = "v2:" + hmac.new(KEY, message, hashlib.sha256).hexdigest()
    assert sign(KEY, wallet="GW0", pair_id="A/B", label="wash", note="lots", annotator_id="ana",
                annotated_at=T0) == expected  # fmt: skip
    wide = b'ledgerlens-annotation-v2\n["GW0",null,"wash",null,"ana","2024-05-01T12:00:00+00:00"]'
    assert _rows(1).get_column("hmac").item() != sign(KEY, wallet="GW0", label="wash", annotator_id="ana",
                                                      annotated_at=T0)  # the row has a note: it is signed too
    assert sign(KEY, wallet="GW0", pair_id="", label="wash", note="", annotator_id="ana", annotated_at=T0) == \
        "v2:" + hmac.new(KEY, wide, hashlib.sha256).hexdigest()  # empty = absent, as stored


def _moved(stored: pl.DataFrame, wallet: str, **changes) -> pl.DataFrame:
    """`stored` with one row's fields changed (the HMAC kept)."""
    hit = pl.col("wallet") == wallet
    return stored.with_columns(**{c: pl.when(hit).then(pl.lit(v, dtype=pl.String)).otherwise(c)
                                  for c, v in changes.items()})  # fmt: skip


def test_a_label_cannot_move_to_another_pair_or_change_its_note(store):
    store.append_annotations(_rows(3))  # GW1 is about pair A/B; GW0 and GW2 about every pair
    stored = store.annotations()
    for wallet, changes in [("GW1", {"pair_id": "C/D"}), ("GW1", {"pair_id": None}), ("GW0", {"pair_id": "A/B"}),
                            ("GW2", {"note": "not what was written"}), ("GW2", {"annotator_id": "eve"})]:  # fmt: skip
        out = verify_annotations(_moved(stored, wallet, **changes), KEY)
        assert out.rejected.get_column("wallet").to_list() == [wallet], changes
        assert out.rejected.get_column("reason").item() == REASON_MISMATCH and out.valid.height == 2


def test_legacy_rows_are_checked_with_the_old_scheme_and_refused_by_name(store):
    at = "2024-05-01T12:00:00+00:00"
    legacy = sign_legacy(KEY, wallet="GL", label="wash", annotator_id="ana", annotated_at=at)
    assert legacy == hmac.new(KEY, f"GL|wash|ana|{at}".encode(), hashlib.sha256).hexdigest()
    rows = pl.DataFrame({"wallet": ["GL", "GM"], "pair_id": ["A/B", None], "label": ["wash", "legit"],
                         "note": [None, None], "annotator_id": ["ana", "ana"], "annotated_at": [T0, T0],
                         "label_source": ["analyst"] * 2, "hmac": [legacy, "0" * 64]},
                        schema=ANNOTATION_SCHEMA)  # fmt: skip
    store.append_annotations(pl.concat([rows, _rows(1)]))
    out = verify_annotations(store.annotations(), KEY)
    assert out.valid.get_column("wallet").to_list() == ["GW0"]
    assert dict(out.rejected.select("wallet", "reason").iter_rows()) == {"GL": REASON_LEGACY, "GM": REASON_MISMATCH}
    assert out.n_legacy == 1 and "cannot be proven; label it again" in out.names()[0]


def test_stored_rows_verify_and_tampered_rows_are_named(store):
    store.append_annotations(_rows(3))
    stored = store.annotations()
    ok = verify_annotations(stored, KEY)
    assert ok.valid.height == 3 and ok.rejected.height == 0  # incl. microsecond 0 and non-zero round trips
    tampered = stored.with_columns(label=pl.when(pl.col("wallet") == "GW1").then(pl.lit("wash")).otherwise("label"))
    out = verify_annotations(tampered, KEY)
    assert out.valid.get_column("wallet").to_list() == ["GW0", "GW2"]
    assert out.names() == [f"GW1 wash by ana at {stored['annotated_at'][1]} ({REASON_MISMATCH})"]
    assert verify_annotations(stored, b"x" * 32).rejected.height == 3  # another key


def test_key_created_0600_and_legacy_key_carried_over(tmp_path):
    path = tmp_path / "keys" / "annotation_hmac.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    legacy = tmp_path / "annotation.key"
    legacy.write_bytes(b"L" * 32)
    assert load_or_create_key(tmp_path / "new" / "k.key", legacy=legacy) == b"L" * 32


# -- export / import -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_export_then_import_verifies_and_is_idempotent(tmp_path, store, suffix):
    from storage.store import Store

    store.append_annotations(_rows(4))
    path = tmp_path / f"labels.{suffix}"
    assert export_annotations(store.annotations(), path) == 4
    assert read_annotation_file(path).get_column("hmac").to_list() == store.annotations().get_column("hmac").to_list()
    with Store(tmp_path / "other.duckdb") as other:
        first = import_annotations(other, path, KEY)
        again = import_annotations(other, path, KEY)
        assert (first.n_read, first.n_added, first.n_duplicate, first.verified.rejected.height) == (4, 4, 0, 0)
        assert (again.n_added, again.n_duplicate) == (0, 4)
        assert other.annotations().get_column("label_source").unique().to_list() == ["import"]


def test_cli_import_rejects_tampered_rows_by_name_and_exits_1(tmp_path, monkeypatch, capsys):
    s = _settings(tmp_path)
    monkeypatch.setenv("LEDGERLENS_HOME", str(s.home))
    db = str(tmp_path / "a.duckdb")
    for w, label in (("GAAA", "wash"), ("GBBB", "legit")):
        assert main(["annotate", "--db", db, "--wallet", w, "--label", label, "--annotator", "ana", "--no-retrain"]) == 0
    out = tmp_path / "x.csv"
    assert main(["annotate", "--db", db, "--export", str(out)]) == 0
    text = out.read_text().replace("GBBB,,legit", "GBBB,,wash")  # the attacker flips a label
    out.write_text(text)
    capsys.readouterr()
    assert main(["annotate", "--db", str(tmp_path / "b.duckdb"), "--import", str(out)]) == 1
    cap = capsys.readouterr()
    assert "rejected: GBBB wash by ana at" in cap.err and "HMAC mismatch" in cap.err
    assert "2 row(s) read: 1 imported, 0 already stored, 1 rejected" in cap.out
    from storage.store import Store

    with Store(tmp_path / "b.duckdb") as b:
        assert b.annotations().get_column("wallet").to_list() == ["GAAA"]


def test_cli_import_refuses_a_label_moved_to_another_pair(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEDGERLENS_HOME", str(tmp_path / "home"))
    db = str(tmp_path / "a.duckdb")
    assert main(["annotate", "--db", db, "--wallet", "GAAA", "--pair", "X:GI/XLM:native", "--label", "wash",
                 "--annotator", "ana", "--no-retrain"]) == 0  # fmt: skip
    out = tmp_path / "x.csv"
    assert main(["annotate", "--db", db, "--export", str(out)]) == 0
    out.write_text(out.read_text().replace("GAAA,X:GI/XLM:native,", "GAAA,Y:GI/XLM:native,"))
    capsys.readouterr()
    assert main(["annotate", "--db", str(tmp_path / "b.duckdb"), "--import", str(out)]) == 1
    err = capsys.readouterr().err
    assert "rejected: GAAA wash by ana at" in err and "moved to another pair" in err


# -- strategies -------------------------------------------------------------------------------------


def test_uncertainty_vote_entropy_and_committee_values():
    assert uncertainty(np.array([0.5, 0.0, 0.75])).tolist() == [1.0, 0.0, 0.5]
    members = np.array([[0.9, 0.8, 0.7], [0.9, 0.2, 0.1], [0.6, 0.4, 0.55]])
    h = -(1 / 3 * np.log2(1 / 3) + 2 / 3 * np.log2(2 / 3))
    assert np.allclose(vote_entropy(members), [0.0, h, h])
    assert np.allclose(committee(members), [0.02, h + 0.08, h + 0.02])


def _pool() -> pl.DataFrame:
    return pl.DataFrame({
        "wallet": ["G1", "G2", "G3", "G4", "G5"], "pair_id": ["P"] * 5, "p": [0.5, 0.45, 0.9, 0.1, 0.6],
        "p_rf": [0.6, 0.6, 0.9, 0.1, 0.7], "p_xgb": [0.4, 0.4, 0.9, 0.1, 0.5], "p_lgbm": [0.5, 0.3, 0.9, 0.1, 0.4],
        "ring_id": ["r1", "r1", None, None, "r2"],
    })  # fmt: skip


def test_rank_queue_per_strategy():
    pool = _pool()
    unc = rank_queue(pool, strategy="uncertainty", size=3)
    assert unc.get_column("wallet").to_list() == ["G1", "G2", "G5"]
    assert unc.get_column("priority").to_list() == [1.0, 0.9, 0.8]
    com = rank_queue(pool, strategy="committee", size=5)
    assert com.get_column("wallet").to_list() == ["G2", "G5", "G1", "G3", "G4"]
    div = rank_queue(pool, strategy="diversity", size=5)
    assert div.get_column("wallet").to_list() == ["G2", "G5", "G3", "G4"]  # G1 shares ring r1 with G2
    r1, r2 = (rank_queue(pool, strategy="random", size=5, seed=3) for _ in range(2))
    assert r1.equals(r2) and sorted(r1.get_column("wallet")) == ["G1", "G2", "G3", "G4", "G5"]
    assert rank_queue(pool, strategy="random", size=5, seed=4).get_column("wallet").to_list() != \
        r1.get_column("wallet").to_list()


def test_wash_label_raises_ring_mates_and_funding_siblings_not_scores():
    ring_members = pl.DataFrame({"account_id": ["G1", "G2", "GX"], "ring_id": ["r1", "r1", "r1"]})
    edges = pl.DataFrame({"type": ["create_account"] * 3 + ["payment"], "from_account": ["F", "F", "F", "F"],
                          "to_account": ["GX", "G4", "G3", "G5"]})  # fmt: skip
    ev = evidence_boost(["GX"], ring_members=ring_members, funding_edges=edges).sort("wallet")
    assert ev.rows() == [("G1", 0.5, "ring mate of a wash label"), ("G2", 0.5, "ring mate of a wash label"),
                         ("G3", 0.25, "funding sibling of a wash label"), ("G4", 0.25, "funding sibling of a wash label")]  # fmt: skip
    q = rank_queue(_pool(), strategy="uncertainty", size=5, evidence=ev)
    assert q.get_column("wallet").to_list()[:2] == ["G1", "G2"] and q.get_column("priority")[0] == 1.5
    assert q.get_column("p").to_list()[:2] == [0.5, 0.45]  # probabilities untouched
    assert rank_queue(_pool(), strategy="random", size=5, seed=1, evidence=ev).get_column("evidence").null_count() == 5


def test_unlabelled_drops_pair_and_wallet_wide_labels():
    pool = pl.DataFrame({"wallet": ["A", "A", "B", "C"], "pair_id": ["P", "Q", "P", "P"]})
    ann = pl.DataFrame({"wallet": ["A", "B"], "pair_id": ["P", None]})
    assert unlabelled(pool, ann).rows() == [("A", "Q"), ("C", "P")]


# -- over a store -------------------------------------------------------------------------------------


def _scored_store(store) -> None:
    store.append_scores(pl.DataFrame({
        "wallet": ["G1", "G2", "G3", "G4"], "pair_id": ["P"] * 4, "score": [50, 70, 95, 5],
        "benford_flag": [False] * 4, "ml_flag": [False, True, True, False], "confidence": [40, 90, 95, 99],
        "ring_id": [None] * 4, "timestamp": [1_700_000_000] * 4, "model_version": ["v"] * 4,
        "bft_divergence": [False] * 4,
    }))  # fmt: skip


def test_build_queue_falls_back_to_scores_and_skips_labelled(tmp_path, store):
    s = _settings(tmp_path)
    _scored_store(store)
    record_label(store, s, wallet="G1", label="legit", annotator="ana", now=T0)
    res = build_queue(store, s, strategy="committee", size=10)
    assert res.source.startswith("stored scores") and res.n_pool == 3
    assert res.queue.get_column("wallet").to_list() == ["G2", "G3", "G4"]  # 1 - confidence/100
    assert res.queue.get_column("priority").to_list() == [0.1, 0.05, 0.01]


def test_cli_queue_writes_the_csv(tmp_path, monkeypatch, capsys):
    from storage.store import Store

    monkeypatch.setenv("LEDGERLENS_HOME", str(tmp_path / "home"))
    db = tmp_path / "q.duckdb"
    with Store(db) as st:
        _scored_store(st)
    out = tmp_path / "queue.csv"
    assert main(["queue", "--db", str(db), "--strategy", "uncertainty", "--size", "2", "--out", str(out)]) == 0
    assert out.read_text().splitlines() == ["wallet,pair_id,strategy,priority", "G1,P,uncertainty,1.0",
                                            "G2,P,uncertainty,0.6"]  # fmt: skip


def test_retrain_waits_for_threshold_then_rolls_back_on_auc_drop(tmp_path, store):
    from engine.services.retrain import maybe_retrain, retrain_log
    from models.training import synthetic_feature_frame

    features, labels = synthetic_feature_frame(n_wallets=120, n_snapshots=1, pairs_per_wallet=1, seed=1)
    store.save_derived("features", features)
    s = _settings(tmp_path, al_retrain_threshold=3, al_rollback_auc_drop=-1.0)  # any new model "drops"
    wash = labels.filter(pl.col("is_wash") == 1).get_column("account").to_list()
    legit = labels.filter(pl.col("is_wash") == 0).get_column("account").to_list()
    for w in wash[:6] + legit[:30]:
        record_label(store, s, wallet=w, label="wash" if w in wash else "legit", annotator="ana", now=T0)
    first = maybe_retrain(store, s, now=T0, n_estimators=10)
    assert first.status == "promoted" and first.n_labels == 36 and first.n_rejected == 0  # no model before
    assert maybe_retrain(store, s, now=T0, n_estimators=10).status == "skipped"  # 0 new labels
    for w in legit[30:33]:
        record_label(store, s, wallet=w, label="legit", annotator="ana", now=T0)
    second = maybe_retrain(store, s, now=T0, n_estimators=10)
    assert second.status == "rolled_back" and second.current == first.version and second.version != first.version
    from models.registry import current_version

    assert current_version(s.models_dir) == first.version
    assert retrain_log(s).get_column("status").to_list() == ["promoted", "rolled_back"]
