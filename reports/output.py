"""Rendering a report to a format and writing it privately (mode 0o600) under reports/forensic/."""

from __future__ import annotations

import os
from pathlib import Path

from reports.canonical import Published, as_published, sha256_hex
from reports.markdown import render_markdown
from reports.pdf import render_pdf

FORMATS: dict[str, str] = {"pdf": ".pdf", "json": ".json", "markdown": ".md"}


def render(published: Published, fmt: str) -> bytes:
    """The bytes of `published` in `fmt` (pdf | json | markdown), rendered from its canonical form."""
    published = as_published(published)
    if fmt == "json":
        return published.to_bytes()
    if fmt == "markdown":
        return render_markdown(published).encode("utf-8")
    if fmt == "pdf":
        return render_pdf(published)
    raise ValueError(f"unknown report format {fmt!r}; use one of {sorted(FORMATS)}")


def forensic_dir(settings) -> Path:
    return Path(settings.reports_dir) / "forensic"


def default_path(settings, *, wallet: str, fingerprint: str, fmt: str) -> Path:
    """reports/forensic/<wallet>_<first 16 hex of the fingerprint>.<ext> (wallet is a checked G... id)."""
    return forensic_dir(settings) / f"{wallet}_{fingerprint[:16]}{FORMATS[fmt]}"


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only (0o600; a new parent directory gets 0o700)."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_TRUNC otherwise
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
    finally:
        os.close(fd)


def write_report(published: Published, *, fmt: str, path: Path) -> Path:
    """Render and write the report, plus `<file>.sha256` (sha256sum format) beside it; returns the path."""
    data = render(published, fmt)
    write_private(path, data)
    write_private(sidecar(path), f"{sha256_hex(data)}  {Path(path).name}\n".encode())
    return Path(path)


def sidecar(path: Path) -> Path:
    return Path(str(path) + ".sha256")
