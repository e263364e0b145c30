from __future__ import annotations

import os
import subprocess
import sys

from engine.cli import build_parser
from engine.commands.features import dictionary_markdown
from engine.features import FEATURE_DICTIONARY
from tests.conftest import ROOT

# The command line DESIGN.md promises.
DESIGNED = (
    "ingest", "replay", "export", "synth", "inject", "features", "rings", "train", "score", "retrain-if-drifted",
    "queue", "annotate", "report", "verify-report", "snapshot", "train-gnn", "quickstart", "demo",
)  # fmt: skip


def test_every_designed_command_exists_and_takes_db():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(DESIGNED) <= set(sub.choices)
    for name in ("features", "rings", "score", "queue", "snapshot", "demo"):
        assert "--db" in sub.choices[name].format_help()


def test_feature_dictionary_lists_every_feature():
    lines = dictionary_markdown().splitlines()
    assert len(lines) == 2 + len(FEATURE_DICTIONARY)
    for line, (name, info) in zip(lines[2:], FEATURE_DICTIONARY.items(), strict=True):
        assert line.startswith(f"| {name} | ") and info.unit in line and info.direction in line


def test_user_errors_exit_1_with_the_reason(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "ingest", "files", "--db", str(tmp_path / "s.duckdb"), "no-such.jsonl"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1 and "error: no-such.jsonl: no such file or folder" in proc.stderr


def test_the_features_step_sets_polars_allocator_before_polars_loads():
    # polars puts its own defaults first and a user's setting after them when it loads: ours after
    # its defaults means polars read it (set after polars had loaded, it would do nothing); the
    # other steps keep polars' defaults
    assert _allocator_conf("features")[-2:] == ["dirty_decay_ms:5000", "muzzy_decay_ms:5000"]
    assert "dirty_decay_ms:5000" not in _allocator_conf("rings")


def _allocator_conf(step: str) -> list[str]:
    """polars' allocator setting after `python -m engine STEP --help` has run (not set beforehand)."""
    run_cli = (
        f"import os, runpy, sys\nsys.argv = ['engine', {step!r}, '--help']\ntry:\n"
        "    runpy.run_module('engine', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(os.environ['_RJEM_MALLOC_CONF'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    proc = subprocess.run([sys.executable, "-c", run_cli], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1].split(",")
