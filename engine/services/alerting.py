"""Where live-watch alerts go: stdout (JSON lines), HTTPS webhooks and a websocket.

An alert is a dict (wallet, pair, score, ring_id, ledger, closed_at, detected_at,
reasons, model_version). A channel's `send(alert)` returns True once the alert is
delivered, or written to the channel's dead-letter file after the last retry, so
the watch can mark it delivered either way (nothing is lost silently).

Webhook security defaults: https only (plain http only to a loopback host, for
tests); the body is signed with HMAC-SHA256 over the exact bytes sent, in the
header `X-LedgerLens-Signature: sha256=<hex>`; retries with exponential backoff;
what still fails is appended to the dead-letter file as a JSON line.

Websocket security defaults: the watch serves `ws://127.0.0.1:8765` (loopback: this
machine only); any other address is refused unless `allow_remote` is set explicitly
(`--websocket-allow-remote`), since the feed carries no authentication or TLS (put a
TLS proxy with authentication in front of it). Clients only listen: what they send
is ignored. Each alert goes to every client connected when it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO
from urllib.parse import urlsplit

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

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


@dataclass
class WebsocketChannel:
    """Serve alerts as JSON text messages on ws://host:port (loopback unless `allow_remote`); port 0 = any free one."""

    host: str = "127.0.0.1"
    port: int = 8765
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if not (is_loopback(self.host) or self.allow_remote):
            raise BadInput(f"websocket host {self.host!r} is not a loopback address: the alert feed has no "
                           "authentication; pass --websocket-allow-remote to serve it beyond this machine")  # fmt: skip
        self._clients: set[ServerConnection] = set()
        self._lock = threading.Lock()
        self._server = serve(self._handle, self.host, self.port)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, name="alerts-websocket", daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self._clients.add(connection)
        try:
            for _ in connection:  # clients only listen; keep the connection until they leave
                pass
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._clients.discard(connection)

    def send(self, alert: dict) -> bool:
        text = alert_json(alert)
        with self._lock:
            clients = list(self._clients)
        for connection in clients:
            try:
                connection.send(text)
            except ConnectionClosed:
                pass  # it left; _handle forgets it
        return True

    def close(self) -> None:
        self._server.shutdown()


def channels_from(specs: list[str], *, secret: str, dead_letter: Path, allow_remote: bool = False) -> list[Channel]:
    """Channels from `--alerts` values: `stdout`, `webhook=URL` (or a bare https:// URL),
    `websocket` (ws://127.0.0.1:8765) or `websocket=HOST:PORT`."""
    out: list[Channel] = []
    for spec in specs or ["stdout"]:
        if spec == "stdout":
            out.append(StdoutChannel())
        elif spec.startswith("webhook="):
            out.append(WebhookChannel(spec.removeprefix("webhook="), secret, dead_letter))
        elif spec.startswith(("https://", "http://")):
            out.append(WebhookChannel(spec, secret, dead_letter))
        elif spec == "websocket" or spec.startswith("websocket="):
            host, _, port = spec.removeprefix("websocket").removeprefix("=").rpartition(":")
            if spec != "websocket" and not port.isdigit():
                raise BadInput(f"--alerts {spec!r}: write websocket=HOST:PORT, e.g. websocket=127.0.0.1:8765")
            out.append(WebsocketChannel(host.strip("[]") or "127.0.0.1", int(port or 8765), allow_remote=allow_remote))
        else:
            raise BadInput(f"--alerts {spec!r}: use stdout, webhook=https://... or websocket[=HOST:PORT]")
    return out
