"""Personal access tokens for git over HTTP (`hive token create|list|revoke`).

A token is shown once, when it is created; only its SHA-256 is kept. A token carries
192 random bits, so a fast hash is enough (no password stretching: nobody can guess
the preimage), and checking a request is one hash and one dict lookup, with nothing to
compare byte by byte. The book lives in `<state>/tokens.json` (mode 0600), replaced
atomically on every change: tokens change a few times a year and are read on every git
request, so they are kept in memory and the file is only the durable copy (and a table
of their own would put one more migration in the shared sqlite store for a handful of
rows). At most `MAX_TOKENS` tokens exist at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import anyio

from controller.errors import ConflictError, InvalidError, NotFoundError
from controller.store import now_iso

__all__ = ["MAX_TOKENS", "NAME_RE", "NewToken", "TokenBook", "TokenInfo"]

log = logging.getLogger(__name__)

MAX_TOKENS = 256
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PREFIX = "hht_"


@dataclass(frozen=True)
class TokenInfo:
    """A token as `hive token list` shows it (never the token itself)."""

    name: str
    created_at: str
    last_used_at: str | None = None


@dataclass(frozen=True)
class NewToken:
    """A token just created: the only time its secret is seen."""

    name: str
    token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class TokenBook:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._tokens: dict[str, TokenInfo] = {}
        self._by_digest: dict[str, str] = {}
        self._digests: dict[str, str] = {}
        self._lock = anyio.Lock()
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            # Refusing every token is the safe failure; the operator can revoke and
            # create again once the file is fixed or removed.
            log.error("cannot read %s (%s): no git token is accepted", self.path, exc)
            return
        for row in raw.get("tokens", []) if isinstance(raw, dict) else []:
            try:
                used = row.get("last_used")
                info = TokenInfo(
                    str(row["name"]), str(row["created_at"]), None if used is None else str(used)
                )
                digest = str(row["sha256"])
            except (KeyError, TypeError, ValueError):
                log.error("%s: skipping a malformed token row", self.path)
                continue
            self._tokens[info.name] = info
            self._digests[info.name] = digest
            self._by_digest[digest] = info.name

    def _save(self) -> None:
        rows = [
            {
                "name": info.name,
                "sha256": self._digests[info.name],
                "created_at": info.created_at,
                "last_used": info.last_used_at,
            }
            for info in self._tokens.values()
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"tokens": rows}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(staging, self.path)

    def list(self) -> list[TokenInfo]:
        return sorted(self._tokens.values(), key=lambda t: (t.created_at, t.name))

    async def create(self, name: str | None = None) -> NewToken:
        async with self._lock:
            if len(self._tokens) >= MAX_TOKENS:
                raise ConflictError(f"{MAX_TOKENS} tokens exist, the limit; revoke one first")
            if name is None:
                n = len(self._tokens) + 1
                while f"token-{n}" in self._tokens:
                    n += 1
                name = f"token-{n}"
            if not NAME_RE.match(name):
                raise InvalidError(
                    f"token name {name!r} must match {NAME_RE.pattern} "
                    "(lower-case letters, digits, '.', '_' and '-')"
                )
            if name in self._tokens:
                raise ConflictError(f"a token named {name} exists; revoke it or pick another name")
            token = PREFIX + secrets.token_urlsafe(24)
            digest = _digest(token)
            self._tokens[name] = TokenInfo(name, now_iso())
            self._digests[name] = digest
            self._by_digest[digest] = name
            try:
                await anyio.to_thread.run_sync(self._save)
            except BaseException:
                self._forget(name)
                raise
            return NewToken(name, token)

    async def revoke(self, name: str) -> TokenInfo:
        async with self._lock:
            info = self._tokens.get(name)
            if info is None:
                raise NotFoundError(f"no token named {name!r}")
            digest = self._digests[name]
            self._forget(name)
            try:
                await anyio.to_thread.run_sync(self._save)
            except BaseException:
                self._tokens[name], self._digests[name] = info, digest
                self._by_digest[digest] = name
                raise
            return info

    def _forget(self, name: str) -> None:
        self._tokens.pop(name, None)
        self._by_digest.pop(self._digests.pop(name, ""), None)

    def check(self, token: str) -> str | None:
        """The name of the token `token` is, or None; marks it used (in memory: the
        file keeps the use last written with a change)."""
        if not token.startswith(PREFIX) or len(token) > 128:
            return None
        name = self._by_digest.get(_digest(token))
        if name is not None:
            info = self._tokens[name]
            self._tokens[name] = TokenInfo(info.name, info.created_at, now_iso())
        return name
