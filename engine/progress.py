"""Progress reporting for long work: counts, rate and ETA.

Engine steps take a `Progress` callback (no I/O in the engine itself); the CLI
passes `CliProgress` (a line on stderr), the app a Streamlit progress bar adapter.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Protocol


class Progress(Protocol):
    def __call__(self, *, done: int, total: int | None, records: int, unit: str = "ledgers") -> None: ...


def no_progress(*, done: int, total: int | None, records: int, unit: str = "ledgers") -> None:
    """A Progress that reports nothing."""


@dataclass
class Rate:
    """Rate and ETA from the work done since `started` (monotonic seconds)."""

    started: float = field(default_factory=time.monotonic)

    def describe(self, *, done: int, total: int | None, records: int, unit: str) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = done / elapsed
        parts = [f"{records:,} records", f"{done:,}{'/' + format(total, ',') if total else ''} {unit}"]
        parts.append(f"{rate:,.1f} {unit}/s")
        if total and rate > 0 and done < total:
            parts.append(f"ETA {_seconds((total - done) / rate)}")
        parts.append(f"elapsed {_seconds(elapsed)}")
        return " | ".join(parts)


def _seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class CliProgress:
    """Writes one updating progress line to stderr (at most ~4 times a second)."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream, self.rate, self._last = label, stream or sys.stderr, Rate(), 0.0

    def __call__(self, *, done: int, total: int | None, records: int, unit: str = "ledgers") -> None:
        now = time.monotonic()
        if now - self._last < 0.25 and not (total and done >= total):
            return
        self._last = now
        line = f"{self.label}: {self.rate.describe(done=done, total=total, records=records, unit=unit)}"
        end = "\n" if not self.stream.isatty() else "\r"
        self.stream.write(line + end)
        self.stream.flush()
