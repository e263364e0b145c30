"""Where live-watch alerts go: stdout (JSON lines) and HTTPS webhooks.

An alert is a dict (wallet, pair, score, ring_id, ledger, closed_at, detected_at,
reasons, model_version). A channel's `send(alert)` returns True once the alert is
delivered, or written to the channel's dead-letter file after the last retry, so
the watch can mark it delivered either way (nothing is lost silently).

Webhook security defaults: https only (plain http only to a loopback host, for
tests); the body is signed with HMAC-SHA256 over the exact bytes sent, in the
header `X-LedgerLens-Signature: sha256=<hex>`; retries with exponential backoff;
what still fails is appended to the dead-letter file as a JSON line.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO
from urllib.parse import urlsplit

import requests

from storage.errors import BadInput

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-LedgerLens-Signature"


class Channel(Protocol):
    def send(self, alert: dict) -> bool: ...


def alert_json(alert: dict) -> str:
    """One alert as a compact JSON line (the stdout format and the webhook body)."""
    return json.dumps(alert, separators=(",", ":"), sort_keys=True, default=str)


@dataclass
class StdoutChannel:
    out: TextIO | None = None

    def send(self, alert: dict) -> bool:
        out = self.out or sys.stdout
        out.write(alert_json(alert) + "\n")
        out.flush()
        return True


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class WebhookChannel:
    """POST each alert as signed JSON; retries with backoff; the dead-letter file takes what fails."""

    url: str
    secret: str
    dead_letter: Path
    max_retries: int = 4
    backoff_base_s: float = 0.5
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname)):
            raise BadInput(f"webhook {self.url!r} must be https:// (plain http only to a loopback address)")
        if not self.secret:
            raise BadInput("a webhook needs a signing secret: set LEDGERLENS_ALERT_WEBHOOK_SECRET")

    def send(self, alert: dict) -> bool:
        body = alert_json(alert).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret)}
        error = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = requests.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
                if response.status_code < 300:
                    return True
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429):
                    break  # the receiver refuses this alert: retrying will not help
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_retries:
                time.sleep(self.backoff_base_s * 2**attempt)
        log.warning("webhook %s failed (%s); alert written to %s", self.url, error, self.dead_letter)
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"url": self.url, "error": error, "alert": alert}, default=str) + "\n")
        return True


def channels_from(specs: list[str], *, secret: str, dead_letter: Path) -> list[Channel]:
    """Channels from `--alerts` values: `stdout`, `webhook=URL` (or a bare https:// URL)."""
    out: list[Channel] = []
    for spec in specs or ["stdout"]:
        if spec == "stdout":
            out.append(StdoutChannel())
        elif spec.startswith("webhook="):
            out.append(WebhookChannel(spec.removeprefix("webhook="), secret, dead_letter))
        elif spec.startswith(("https://", "http://")):
            out.append(WebhookChannel(spec, secret, dead_letter))
        else:
            raise BadInput(f"--alerts {spec!r}: use stdout or webhook=https://... (websocket is not built yet)")
    return out
