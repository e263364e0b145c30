"""Trained models as every use case sees them: the signing key, the trust list and ONE model cache.

The pages, the reports, scoring, training and the CLI load a model only through
`load_model`: its signature is verified against the trusted fingerprints before
unpickling, and the verified model (with its SHAP explainers) is kept per process,
keyed on the registry folder, the version, the trust list and the version's files
(size and modification time), so a file changed after loading is verified again.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from engine.explain import tree_explainers
from models.registry import METADATA, LoadedModel, current_version, list_versions, load_version, verify_version
from models.signing import fingerprint, load_or_create_key, public_bytes
from storage.errors import NotFound

VERSION_NAME = re.compile(r"v[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


def signing_key(settings):
    """The Ed25519 key signing model metadata and reports (settings path, created on first use)."""
    path = settings.model_signing_key or settings.home / "keys" / "model_signing_ed25519.pem"
    return load_or_create_key(Path(path))


def trusted_fingerprints(settings) -> frozenset[str]:
    """LEDGERLENS_MODEL_TRUSTED_FINGERPRINTS (comma-separated), else the local signing key's."""
    configured = settings.model_trusted_fingerprints or ""
    fps = frozenset(f.strip().lower() for f in configured.split(",") if f.strip())
    return fps or frozenset({fingerprint(public_bytes(signing_key(settings)))})


def model_version(settings) -> str | None:
    """The promoted model version (a file read), None when no model was ever trained."""
    return current_version(settings.models_dir)


def explainable_version(settings, scored_with: str | None) -> str | None:
    """The version that produced a score when the registry still holds it, else the current one."""
    named = bool(scored_with and VERSION_NAME.fullmatch(scored_with))
    if named and (settings.models_dir / scored_with / METADATA).exists():
        return scored_with
    return model_version(settings)


def model_versions(settings) -> list[dict]:
    """models.registry.list_versions of the settings' models_dir (metadata JSON only; newest first)."""
    return list_versions(settings.models_dir)


def current_metadata(settings) -> dict | None:
    """Verified metadata of the current version (nothing unpickled), None without one."""
    version = model_version(settings)
    if version is None:
        return None
    return verify_version(settings.models_dir / version, trusted_fingerprints=trusted_fingerprints(settings))


def load_model(settings, *, version: str | None = None) -> LoadedModel:
    """The promoted (or named) version, verified before unpickling, from the process's one model cache.

    Raises NotFound when there is none, ModelIntegrityError when verification fails."""
    version = version or model_version(settings)
    if version is None:
        raise NotFound(f"no model in {settings.models_dir}; run `python -m engine train` first")
    models_dir = Path(settings.models_dir)
    return _loaded(str(models_dir), version, trusted_fingerprints(settings), _stamp(models_dir / version))


def explainers(settings, loaded: LoadedModel) -> list:
    """The SHAP tree explainers of a loaded model (built once per cached model)."""
    models_dir = Path(settings.models_dir)
    return _explainers(str(models_dir), loaded.version, trusted_fingerprints(settings), _stamp(models_dir / loaded.version))


def _stamp(folder: Path) -> tuple:
    """(name, size, mtime) of a version's files: the cache key part that changes when a file does."""
    if not (VERSION_NAME.fullmatch(folder.name) and folder.is_dir()):
        return ()  # load_version says what is wrong with the name or the folder
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file())


@lru_cache(maxsize=4)
def _loaded(models_dir: str, version: str, trusted: frozenset[str], stamp: tuple) -> LoadedModel:
    return load_version(Path(models_dir), version, trusted_fingerprints=trusted)


@lru_cache(maxsize=4)
def _explainers(models_dir: str, version: str, trusted: frozenset[str], stamp: tuple) -> list:
    return tree_explainers(_loaded(models_dir, version, trusted, stamp).model)
