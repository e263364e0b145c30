from __future__ import annotations

from pathlib import Path

from engine.settings import Settings
from tests.conftest import ROOT


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [f"LEDGERLENS_{name.upper()}" for name in Settings.model_fields if f"LEDGERLENS_{name.upper()}" not in readme]
    assert not missing, f"document these settings in README.md: {missing}"


def test_every_setting_has_a_description():
    assert all(f.description for f in Settings.model_fields.values())


def test_db_defaults_under_home_and_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("LEDGERLENS_HOME", str(tmp_path))
    assert Settings().db_path == tmp_path / "ledgerlens.duckdb"
    monkeypatch.setenv("LEDGERLENS_DB", str(tmp_path / "other.duckdb"))
    assert Settings().db_path == Path(tmp_path / "other.duckdb")
