"""Who may use the server: API keys and short-lived client tokens, checked before anything else.

With ``VOICEWIRE_API_KEYS`` set, every REST route and WebSocket needs a credential, except
liveness and readiness (``/health``, ``/health/ready``), the browser page and its assets, and
the API's own documentation. :class:`Guard` checks it in front of the app, so a refused
WebSocket gets its HTTP 401 before the upgrade and no session is ever created for it.

- **Keys** are stored as SHA-256 digests and compared in constant time (every key is compared,
  never stopping at the first match), read from the setting or from a file that is re-read
  when it changes (removing a line revokes the key for new connections). A key is never
  logged: log lines name the key, never its secret.
- **Client tokens** (``POST /v1/client_tokens``) let a browser connect without holding a key
  (a browser cannot set headers on a WebSocket): HMAC-SHA256 over the key's name and an
  expiry, valid for connecting for ``token_ttl_s``, refused once their key is revoked. Sent
  as ``?token=`` or as a WebSocket subprotocol ``voicewire-token.<token>``; the OpenAI SDKs'
  browser form ``openai-insecure-api-key.<key or token>`` works too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from voicewire.providers import ConfigError

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vwt_"
# WebSocket subprotocols that carry a credential (never chosen as the connection's protocol)
CREDENTIAL_PROTOCOLS = ("voicewire-token.", "openai-insecure-api-key.")
PUBLIC_PATHS = {"/", "/health", "/health/ready", "/docs", "/openapi.json"}
PUBLIC_PREFIXES = ("/web/", "/static/api-docs/")


class AuthError(Exception):
    """Why a request is refused: an HTTP status, a code and a sentence for the client."""

    def __init__(self, message: str, code: str = "unauthorized", status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    digest: bytes  # SHA-256 of the secret; the secret itself is not kept
    options: dict[str, str] = field(default_factory=dict)  # "sessions=5" etc. from its line


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_keys(text: str) -> list[Key]:
    """Keys, one per line or comma-separated: ``key`` or ``name:key``, then optional
    ``option=value`` words (per-key limits). ``#`` starts a comment. A key without a name is
    named after its digest, so logs can tell keys apart without showing one."""
    keys = []
    for raw in text.replace(",", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        first, *rest = line.split()
        name, _, secret = first.rpartition(":")
        if not secret:
            raise ValueError("an empty API key")
        digest = _digest(secret)
        options = dict(word.split("=", 1) for word in rest if "=" in word)
        keys.append(Key(name or f"key-{digest.hex()[:8]}", digest, options))
    return keys


class Keyring:
    """The accepted keys, from ``VOICEWIRE_API_KEYS``: the keys themselves or ``@path``."""

    def __init__(self, setting: str | None) -> None:
        self.path: Path | None = None
        self._mtime: float | None = None
        self._keys: list[Key] = []
        try:
            if setting and setting.startswith("@"):
                self.path = Path(setting[1:])
                if not self.path.is_file():
                    raise ValueError(f"no keys file at {self.path}")
                self._reload()
            elif setting:
                self._keys = parse_keys(setting)
        except (ValueError, OSError) as e:
            raise ConfigError(f"VOICEWIRE_API_KEYS: {e}") from e
        if setting and not self._keys:
            raise ConfigError("VOICEWIRE_API_KEYS: no key in it")
        self.enabled = bool(setting)

    def _reload(self) -> None:
        assert self.path is not None
        try:
            mtime = self.path.stat().st_mtime
        except OSError as e:  # a file that went away accepts no key (not: every key)
            if self._keys:
                log.error("API keys file %s unreadable (%s): no key is accepted", self.path, e)
            self._keys, self._mtime = [], None
            return
        if mtime != self._mtime:
            self._keys = parse_keys(self.path.read_text())
            self._mtime = mtime
            log.info("API keys: %d loaded from %s", len(self._keys), self.path)

    @property
    def keys(self) -> list[Key]:
        if self.path is not None:
            self._reload()
        return self._keys

    def lookup(self, secret: str) -> Key | None:
        """The key whose secret this is: every key is compared, in constant time."""
        digest = _digest(secret)
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    def named(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)


_TOKEN_PARAM = re.compile(r"((?:^|[?&])(?:resume_)?token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """uvicorn logs a WebSocket's path with its query ("... ?token=vwt_... [accepted]"):
    the token (and a ``resume_token``) is replaced before any handler sees the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN_PARAM.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_PARAM.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def redact_server_logs() -> None:
    """Install :class:`RedactTokens` on uvicorn's loggers (once)."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """Signed, short-lived client tokens bound to a key's name."""

    def __init__(self, secret: str | None) -> None:
        # generated at start if unset: tokens then hold on this process only (set the secret
        # for several workers, and so that a restart does not void the tokens out there)
        self._secret = (secret or secrets.token_hex(32)).encode()

    def mint(
        self,
        key: str,
        ttl_s: float,
        now: float | None = None,
        session: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A token for ``key``; ``session``: a Realtime session configuration the connection
        starts with (OpenAI's client secrets carry one), signed with the rest."""
        expires = int((now if now is not None else time.time()) + ttl_s)
        claims: dict[str, Any] = {"k": key, "exp": expires}
        if session:
            claims["s"] = session
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{TOKEN_PREFIX}{payload}.{self._sign(payload)}", expires

    def verify(self, token: str, now: float | None = None) -> Caller:
        """Who a token was minted for; AuthError if forged, malformed or expired."""
        body = token.removeprefix(TOKEN_PREFIX)
        payload, _, signature = body.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise AuthError("invalid client token")
        try:
            claims = json.loads(_unb64(payload))
            key, expires = str(claims["k"]), float(claims["exp"])
            session = claims.get("s")
            if session is not None and not isinstance(session, dict):
                raise TypeError("session")
        except (ValueError, KeyError, TypeError) as e:
            raise AuthError("invalid client token") from e
        if (now if now is not None else time.time()) > expires:
            raise AuthError("client token expired: mint a new one", code="token_expired")
        return Caller(key, "token", session)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key's name, and whether they came with the key or a token."""

    key: str
    via: str  # "key" or "token"
    session: dict[str, Any] | None = None  # a client secret's Realtime session configuration


def offered_protocols(scope: dict[str, Any]) -> list[str]:
    return [p.strip() for p in scope.get("subprotocols") or [] if p.strip()]


def chosen_protocol(scope: dict[str, Any]) -> str | None:
    """The subprotocol to accept: the first one offered that is not a credential (a browser
    fails the connection if it offered some and the server picks none)."""
    for protocol in offered_protocols(scope):
        if not protocol.startswith(CREDENTIAL_PROTOCOLS):
            return protocol
    return None


def credential(scope: dict[str, Any]) -> str | None:
    """The secret a request carries: ``Authorization: Bearer``, a credential subprotocol, or
    (WebSocket only) ``?token=``."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    for protocol in offered_protocols(scope):
        for prefix in CREDENTIAL_PROTOCOLS:
            if protocol.startswith(prefix):
                return protocol[len(prefix) :]
    if scope["type"] == "websocket":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0]
    return None


class Authenticator:
    """Keys and tokens together: who a credential belongs to."""

    def __init__(self, keyring: Keyring, tokens: Tokens) -> None:
        self.keyring = keyring
        self.tokens = tokens

    @property
    def enabled(self) -> bool:
        return self.keyring.enabled

    def caller(self, secret: str | None, websocket: bool) -> Caller:
        if not secret:
            raise AuthError("an API key is required: send Authorization: Bearer <key>")
        if secret.startswith(TOKEN_PREFIX):
            if not websocket:
                raise AuthError("client tokens open WebSockets; REST routes take an API key")
            caller = self.tokens.verify(secret)
            if self.keyring.named(caller.key) is None:
                raise AuthError("the key this token was minted for has been revoked")
            return caller
        key = self.keyring.lookup(secret)
        if key is None:
            raise AuthError("invalid API key")
        return Caller(key.name, "key")


def is_public(scope: dict[str, Any]) -> bool:
    if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
        return False
    path = scope.get("path", "")
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Guard:
    """ASGI middleware: refuse requests without a valid credential, before the app sees them
    (a WebSocket is refused with HTTP 401 instead of being upgraded). The caller is put in
    ``scope["state"]["caller"]`` for the routes (per-key limits, token minting)."""

    def __init__(self, app: Any, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not self.auth.enabled:
            await self.app(scope, receive, send)
            return
        if not is_public(scope):
            try:
                caller = self.auth.caller(credential(scope), scope["type"] == "websocket")
            except AuthError as e:
                client = (scope.get("client") or ("?",))[0]
                log.warning("refused %s %s from %s: %s", scope["type"], scope["path"], client, e)
                await refuse(scope, receive, send, e)
                return
            scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


async def refuse(scope: dict[str, Any], receive: Any, send: Any, error: AuthError) -> None:
    """An HTTP error answer with a JSON body, for an HTTP request or a WebSocket handshake."""
    body = json.dumps({"error": {"code": error.code, "message": error.message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if error.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="voicewire"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if (await receive())["type"] != "websocket.connect":
        return  # the client left during the handshake
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {"type": "websocket.http.response.start", "status": error.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without the denial-response extension: a plain refusal (HTTP 403)
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
