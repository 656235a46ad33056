"""An agent's Claude credentials, stored in its `CLAUDE_CONFIG_DIR` and never shown back.

Two kinds, both checked against the real claude CLI (2.1.x) in the tests:
- an **API key** (console key or gateway token): written to `hyperhive-api-key` (0600),
  and `settings.json` in the config dir gets `"apiKeyHelper": "cat <that file>"`. Claude
  Code runs the helper and sends its output as `x-api-key` and `Authorization: Bearer`.
- an **OAuth token** (from `claude setup-token`): written as `.credentials.json`
  `{"claudeAiOauth": {"accessToken": ...}}` (0600), the file claude's own `/login`
  writes on Linux; claude sends it as `Authorization: Bearer`.

Files are written atomically with mode 0600 from the start (never world-readable for an
instant). The status the page shows says which kind is stored and when, nothing more.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "KEY_FILE",
    "OAUTH_FILE",
    "CredentialStatus",
    "InvalidCredentialError",
    "forget",
    "status",
    "store",
]

KEY_FILE = "hyperhive-api-key"
OAUTH_FILE = ".credentials.json"
SETTINGS_FILE = "settings.json"
Kind = Literal["api_key", "oauth_token"]
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{8,4096}$")


class InvalidCredentialError(ValueError):
    """Raised when a submitted credential is empty or malformed."""


@dataclass(frozen=True)
class CredentialStatus:
    kind: Kind | None
    stored_at: float | None


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _settings(config_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((config_dir / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store(config_dir: Path, kind: str, secret: str) -> CredentialStatus:
    """Store a credential (blocking: call it from a worker thread)."""
    secret = secret.strip()
    if kind not in ("api_key", "oauth_token"):
        raise InvalidCredentialError("kind must be api_key or oauth_token")
    if not _TOKEN_RE.fullmatch(secret):
        raise InvalidCredentialError("that does not look like a key or token (no spaces, 8+ chars)")
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = _settings(config_dir)
    if kind == "api_key":
        key_path = config_dir / KEY_FILE
        _write_private(key_path, (secret + "\n").encode())
        settings["apiKeyHelper"] = f"cat {shlex.quote(str(key_path))}"
        (config_dir / OAUTH_FILE).unlink(missing_ok=True)
    else:
        # A `claude setup-token` token lives a year and cannot be refreshed: say so, or
        # claude would try to refresh it before every run.
        expires = int((time.time() + 365 * 86400) * 1000)
        payload = {
            "claudeAiOauth": {
                "accessToken": secret,
                "refreshToken": None,
                "expiresAt": expires,
                "scopes": ["user:inference"],
            }
        }
        _write_private(config_dir / OAUTH_FILE, json.dumps(payload).encode())
        settings.pop("apiKeyHelper", None)
        (config_dir / KEY_FILE).unlink(missing_ok=True)
    _write_private(config_dir / SETTINGS_FILE, json.dumps(settings, indent=2).encode())
    return status(config_dir)


def forget(config_dir: Path) -> CredentialStatus:
    settings = _settings(config_dir)
    if settings.pop("apiKeyHelper", None) is not None:
        _write_private(config_dir / SETTINGS_FILE, json.dumps(settings, indent=2).encode())
    (config_dir / KEY_FILE).unlink(missing_ok=True)
    (config_dir / OAUTH_FILE).unlink(missing_ok=True)
    return status(config_dir)


def status(config_dir: Path) -> CredentialStatus:
    for name, kind in ((KEY_FILE, "api_key"), (OAUTH_FILE, "oauth_token")):
        try:
            mtime = (config_dir / name).stat().st_mtime
        except OSError:
            continue
        return CredentialStatus(kind, mtime)  # type: ignore[arg-type]
    return CredentialStatus(None, None)


def stored_ago(state: CredentialStatus) -> str:
    if state.stored_at is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(state.stored_at))
