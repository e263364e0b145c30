"""The model registry: signed, hashed, never-overwritten model versions.

Layout under `models_dir`:
    <version>/model.pkl               the pickled WashEnsemble
    <version>/drift_reference.json    per-feature PSI bins of the training data
    <version>/trained_keys.json       keys of the rows the model was fit on (fair comparisons later)
    <version>/model_metadata.json     feature columns + schema hash, library versions, data hash,
                                      label source and distribution, seed, metrics, imbalance
                                      method, SHA-256 of every artifact, the signer's public key
    <version>/model_metadata.sig      Ed25519 signature of the metadata file's bytes
    CURRENT                           the promoted version's name
    promotions.jsonl                  every promotion, appended

Loading verifies the signer's fingerprint (trusted set), the signature and every
artifact hash BEFORE anything is unpickled; any failure raises ModelIntegrityError
and nothing is loaded. A version directory is written once (to a temp dir, then
renamed) and never overwritten; promoting a new version leaves the old one in place
(archived, still loadable by name).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models import signing
from storage.errors import BadInput, ModelIntegrityError, NotFound

METADATA = "model_metadata.json"
SIGNATURE = "model_metadata.sig"
MODEL_FILE = "model.pkl"
DRIFT_FILE = "drift_reference.json"
TRAINED_KEYS_FILE = "trained_keys.json"  # row keys the model was fit on (models.training.row_keys)
CURRENT = "CURRENT"
_VERSION_RE = re.compile(r"^v[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
LABEL_SHIFT_TOLERANCE = 0.15


class LabelShiftError(BadInput):
    """The wash-label ratio moved beyond the tolerance from the stored baseline (possible poisoning)."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: object  # models.ensemble.WashEnsemble
    metadata: dict
    drift_reference: dict
    trained_keys: frozenset[str] = frozenset()  # empty for versions saved before the keys were kept

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(self.metadata["feature_columns"])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_hash(columns: list[str] | tuple[str, ...]) -> str:
    """SHA-256 of the ordered feature column names."""
    return sha256_bytes("\n".join(columns).encode())


def save_version(
    models_dir: Path, model, *, metadata: dict, drift_reference: dict, key, promote: bool = True,
    now: datetime | None = None, trained_keys: list[str] | tuple[str, ...] = (),
) -> str:  # fmt: skip
    """Write a new signed version (never overwriting one) and optionally promote it; returns its name."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    artifacts = {
        MODEL_FILE: pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL),
        DRIFT_FILE: json.dumps(drift_reference, sort_keys=True).encode(),
        TRAINED_KEYS_FILE: json.dumps(sorted(trained_keys)).encode(),
    }
    now = now or datetime.now(UTC)
    digest = sha256_bytes(artifacts[MODEL_FILE])[:8]
    # The same model trained twice within a second: the later one is named a second later,
    # so names stay unique and in creation order (nothing is ever overwritten).
    while (models_dir / f"v{now:%Y%m%dT%H%M%S}Z-{digest}").exists():
        now += timedelta(seconds=1)
    version = f"v{now:%Y%m%dT%H%M%S}Z-{digest}"
    public = signing.public_bytes(key)
    meta = {
        **metadata, "version": version, "created_at": now.isoformat(),
        "artifacts": {name: sha256_bytes(data) for name, data in artifacts.items()},
        "public_key": public.hex(), "key_fingerprint": signing.fingerprint(public),
    }  # fmt: skip
    meta_bytes = json.dumps(meta, sort_keys=True, indent=1, default=str).encode()
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=models_dir))
    for name, data in {**artifacts, METADATA: meta_bytes, SIGNATURE: key.sign(meta_bytes)}.items():
        (tmp / name).write_bytes(data)
    final = models_dir / version
    if final.exists():
        raise BadInput(f"model version {version} already exists; versions are never overwritten")
    os.rename(tmp, final)
    if promote:
        promote_version(models_dir, version)
    return version


def promote_version(models_dir: Path, version: str) -> None:
    """Make `version` the current model (the previous one stays, archived)."""
    models_dir = Path(models_dir)
    _check_name(version)
    if not (models_dir / version / METADATA).exists():
        raise NotFound(f"model version {version} is not in {models_dir}")
    tmp = models_dir / f".{CURRENT}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, models_dir / CURRENT)
    with open(models_dir / "promotions.jsonl", "a") as fh:
        fh.write(json.dumps({"version": version, "promoted_at": datetime.now(UTC).isoformat()}) + "\n")


def current_version(models_dir: Path) -> str | None:
    """The promoted version's name, or None when no model was ever promoted."""
    path = Path(models_dir) / CURRENT
    if not path.exists():
        return None
    version = path.read_text().strip()
    _check_name(version)
    return version


def list_versions(models_dir: Path) -> list[dict]:
    """Every stored version (newest first): version, created_at, current, roc_auc, pr_auc, label_source.

    Reads the metadata JSON only (nothing is unpickled or trusted here)."""
    models_dir = Path(models_dir)
    if not models_dir.exists():
        return []
    cur = current_version(models_dir)
    out = []
    for d in models_dir.iterdir():
        if not (_VERSION_RE.match(d.name) and (d / METADATA).exists()):
            continue
        meta = json.loads((d / METADATA).read_text())
        test = meta.get("metrics", {}).get("ensemble", {})
        out.append({
            "version": d.name, "created_at": meta.get("created_at"), "current": d.name == cur,
            "roc_auc": test.get("roc_auc"), "pr_auc": test.get("pr_auc"), "label_source": meta.get("label_source"),
        })  # fmt: skip
    return sorted(out, key=lambda v: (v["created_at"] or "", v["version"]), reverse=True)


def load_version(models_dir: Path, version: str | None = None, *, trusted_fingerprints: frozenset[str]) -> LoadedModel:
    """Verify then load a version (default: the current one).

    Raises NotFound when there is no such version, ModelIntegrityError when the
    signer is not trusted, the signature is invalid or any artifact hash differs.
    """
    models_dir = Path(models_dir)
    version = version or current_version(models_dir)
    if version is None:
        raise NotFound(f"no model in {models_dir}; run `python -m engine train` first")
    _check_name(version)
    vdir = models_dir / version
    if not (vdir / METADATA).exists():
        raise NotFound(f"model version {version} is not in {models_dir}")
    meta = verify_version(vdir, trusted_fingerprints=trusted_fingerprints)
    try:
        model = pickle.loads((vdir / MODEL_FILE).read_bytes())  # verified above: hash signed by a trusted key
        drift = json.loads((vdir / DRIFT_FILE).read_bytes())
        keys_path = vdir / TRAINED_KEYS_FILE
        keys = frozenset(json.loads(keys_path.read_bytes())) if TRAINED_KEYS_FILE in meta["artifacts"] else frozenset()
    except Exception as exc:  # a verified artifact that still fails is an integrity problem, not a bug
        raise ModelIntegrityError(f"{vdir}: verified artifacts failed to load ({exc})") from exc
    return LoadedModel(version, model, meta, drift, keys)


def verify_version(vdir: Path, *, trusted_fingerprints: frozenset[str]) -> dict:
    """The verified metadata of a version dir; ModelIntegrityError on any failure. Unpickles nothing."""
    try:
        meta_bytes = (vdir / METADATA).read_bytes()
        signature = (vdir / SIGNATURE).read_bytes()
        meta = json.loads(meta_bytes)
        public = bytes.fromhex(meta["public_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(f"{vdir}: unreadable metadata or signature ({exc}); nothing loaded") from exc
    fp = signing.fingerprint(public)
    if fp not in trusted_fingerprints:
        raise ModelIntegrityError(f"{vdir}: signed by untrusted key {fp[:16]}...; nothing loaded")
    if not signing.verify(public, signature, meta_bytes):
        raise ModelIntegrityError(f"{vdir}: metadata signature is invalid; nothing loaded")
    for name, expected in dict(meta.get("artifacts", {})).items():
        path = vdir / name
        if "/" in name or not path.is_file() or sha256_bytes(path.read_bytes()) != expected:
            raise ModelIntegrityError(f"{vdir}: artifact {name} is missing or its SHA-256 differs; nothing loaded")
    if set(meta.get("artifacts", {})) not in ({MODEL_FILE, DRIFT_FILE}, {MODEL_FILE, DRIFT_FILE, TRAINED_KEYS_FILE}):
        raise ModelIntegrityError(f"{vdir}: metadata lists unexpected artifacts; nothing loaded")
    return meta


def check_feature_schema(expected: tuple[str, ...] | list[str], columns: list[str]) -> None:
    """ModelIntegrityError naming missing / extra columns when `columns` lacks or adds model features."""
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in set(expected)]
    if missing or extra:
        raise ModelIntegrityError(
            f"feature schema mismatch: missing {missing or 'none'}, extra {extra or 'none'}; "
            "recompute features (`python -m engine features`) or retrain (`python -m engine train`)"
        )


def check_label_shift(
    baseline: dict | None, distribution: dict, *, tolerance: float = LABEL_SHIFT_TOLERANCE, force: bool = False
) -> str | None:
    """Poisoning guard: LabelShiftError when the wash ratio moved by more than `tolerance` (relative).

    baseline/distribution: {"wash": n, "legit": n}. Returns a note when forced or when
    there is no baseline, None when the ratio is within tolerance.
    """
    ratio = _wash_ratio(distribution)
    if not baseline:
        return "no stored label baseline: this training sets it"
    base = _wash_ratio(baseline)
    moved = abs(ratio - base) / max(base, 1e-9)
    if moved <= tolerance:
        return None
    report = (
        f"label ratio moved {moved:.0%} (wash share {base:.4f} -> {ratio:.4f}; baseline {baseline}, "
        f"now {distribution}), beyond the {tolerance:.0%} tolerance: the labels may be poisoned"
    )
    if force:
        return report + " (overridden with --force-label-shift)"
    raise LabelShiftError(report + ". Review the new labels, or rerun with --force-label-shift.")


def _wash_ratio(dist: dict) -> float:
    wash, legit = float(dist.get("wash", 0)), float(dist.get("legit", 0))
    return wash / max(wash + legit, 1.0)


def _check_name(version: str) -> None:
    if not _VERSION_RE.match(version):
        raise ModelIntegrityError(f"{version!r} is not a model version name; nothing loaded")
