"""Registry integrity: signed metadata, artifact hashes, trusted keys, fail closed before unpickling."""

from __future__ import annotations

import json
import os
import pickle
import stat

import numpy as np
import pytest

from models import signing
from models.registry import (
    CURRENT,
    DRIFT_FILE,
    METADATA,
    MODEL_FILE,
    SIGNATURE,
    TRAINED_KEYS_FILE,
    LabelShiftError,
    check_feature_schema,
    check_label_shift,
    list_versions,
    load_version,
    save_version,
    sha256_bytes,
)
from models.training import labels_from_simulator, synthetic_feature_frame, train_model
from storage.errors import ModelIntegrityError, NotFound


class _Boom:
    """Unpickling this creates a marker file: proof that an artifact was (wrongly) unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained():
    features, labels = synthetic_feature_frame(
        n_wallets=120,
        n_snapshots=1,
        seed=5,
        columns=("counterparty_hhi", "flow_balance", "round_trip_rate", "n_trades"),
    )
    return train_model(features, labels_from_simulator(labels), seed=0, n_estimators=8, imbalance="class_weight",
                       refit=False, n_jobs=1)  # fmt: skip


@pytest.fixture
def registry(tmp_path, trained):
    key = signing.load_or_create_key(tmp_path / "keys" / "signing.pem")
    models_dir = tmp_path / "models"
    version = save_version(models_dir, trained.model, metadata=trained.metadata, drift_reference=trained.drift_reference,
                           key=key)  # fmt: skip
    trusted = frozenset({signing.fingerprint(signing.public_bytes(key))})
    return models_dir, version, key, trusted


def test_roundtrip_and_metadata(registry, trained):
    models_dir, version, _, trusted = registry
    loaded = load_version(models_dir, trusted_fingerprints=trusted)
    assert loaded.version == version and (models_dir / CURRENT).read_text().strip() == version
    np.testing.assert_array_equal(
        loaded.model.predict_proba(trained.test_X), trained.model.predict_proba(trained.test_X)
    )
    meta = loaded.metadata
    for field in ("feature_columns", "feature_schema_hash", "library_versions", "data_hash", "label_source",
                  "label_distribution", "seed", "metrics", "imbalance"):  # fmt: skip
        assert field in meta
    assert meta["feature_columns"] == ["counterparty_hhi", "flow_balance", "round_trip_rate", "n_trades", "any_missing"]
    assert meta["artifacts"][MODEL_FILE] == sha256_bytes((models_dir / version / MODEL_FILE).read_bytes())
    assert meta["library_versions"]["scikit-learn"] == "1.9.1"
    assert loaded.drift_reference.keys() == set(meta["feature_columns"])


def test_flipped_byte_fails_closed(registry):
    models_dir, version, _, trusted = registry
    path = models_dir / version / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="model.pkl is missing or its SHA-256 differs"):
        load_version(models_dir, trusted_fingerprints=trusted)


def test_flipped_metadata_byte_breaks_signature(registry):
    models_dir, version, _, trusted = registry
    path = models_dir / version / METADATA
    path.write_bytes(path.read_bytes().replace(b'"seed": 0', b'"seed": 1'))
    with pytest.raises(ModelIntegrityError, match="signature is invalid"):
        load_version(models_dir, trusted_fingerprints=trusted)


def test_swapped_key_and_payload_is_never_unpickled(registry, tmp_path):
    """An attacker replaces the model, recomputes the hashes and signs with their own key."""
    models_dir, version, _, trusted = registry
    vdir = models_dir / version
    marker = tmp_path / "unpickled.txt"
    payload = pickle.dumps(_Boom(str(marker)))
    (vdir / MODEL_FILE).write_bytes(payload)
    meta = json.loads((vdir / METADATA).read_bytes())
    attacker = signing.load_or_create_key(tmp_path / "attacker.pem")
    meta["artifacts"][MODEL_FILE] = sha256_bytes(payload)
    meta["public_key"] = signing.public_bytes(attacker).hex()
    meta_bytes = json.dumps(meta).encode()
    (vdir / METADATA).write_bytes(meta_bytes)
    (vdir / SIGNATURE).write_bytes(attacker.sign(meta_bytes))
    with pytest.raises(ModelIntegrityError, match="untrusted key"):
        load_version(models_dir, trusted_fingerprints=trusted)
    assert not marker.exists()
    # trusting the attacker's key is what it would take; then the payload is loaded (and runs)
    load_version(models_dir, trusted_fingerprints=frozenset({signing.fingerprint(signing.public_bytes(attacker))}))
    assert marker.exists()


def test_versions_never_overwritten_and_archived(registry, trained):
    models_dir, first, key, trusted = registry
    from datetime import UTC, datetime

    second = save_version(models_dir, trained.model, metadata={**trained.metadata, "seed": 7},
                          drift_reference=trained.drift_reference, key=key, now=datetime(2030, 1, 1, tzinfo=UTC))  # fmt: skip
    assert second != first and second.startswith("v20300101T000000Z-")
    assert [v["version"] for v in list_versions(models_dir)] == [second, first]
    assert [v["current"] for v in list_versions(models_dir)] == [True, False]
    assert load_version(models_dir, first, trusted_fingerprints=trusted).metadata["seed"] == 0
    assert load_version(models_dir, trusted_fingerprints=trusted).metadata["seed"] == 7
    assert sorted(p.name for p in (models_dir / first).iterdir()) == sorted(
        [MODEL_FILE, DRIFT_FILE, TRAINED_KEYS_FILE, METADATA, SIGNATURE]
    )


def test_bad_names_and_missing_models(tmp_path):
    with pytest.raises(NotFound, match="run `python -m engine train`"):
        load_version(tmp_path, trusted_fingerprints=frozenset())
    with pytest.raises(ModelIntegrityError, match="not a model version name"):
        load_version(tmp_path, "../../etc", trusted_fingerprints=frozenset())


def test_signing_key_created_once_private(tmp_path):
    path = tmp_path / "k" / "signing.pem"
    a = signing.load_or_create_key(path)
    b = signing.load_or_create_key(path)
    assert signing.public_bytes(a) == signing.public_bytes(b)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_feature_schema_mismatch_names_columns():
    with pytest.raises(ModelIntegrityError, match=r"missing \['b'\], extra \['z'\]"):
        check_feature_schema(("a", "b"), ["a", "z"])
    check_feature_schema(("a", "b"), ["a", "b"])


def test_label_shift_guard():
    base = {"wash": 100, "legit": 900}  # 10% wash
    assert check_label_shift(base, {"wash": 110, "legit": 890}) is None  # moved 10%
    with pytest.raises(LabelShiftError, match=r"label ratio moved 20% \(wash share 0.1000 -> 0.1200"):
        check_label_shift(base, {"wash": 120, "legit": 880})
    note = check_label_shift(base, {"wash": 120, "legit": 880}, force=True)
    assert note.endswith("(overridden with --force-label-shift)")
    assert check_label_shift(None, {"wash": 1, "legit": 1}) == "no stored label baseline: this training sets it"
