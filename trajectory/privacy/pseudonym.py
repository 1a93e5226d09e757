"""Keyed pseudonyms for every identifier the system stores or routes on.

A pseudonym is HMAC-SHA256(key, kind + value), 128 bits in hex. Without the key a dictionary of
likely ids cannot reverse it (an unsalted hash can be); with the key the same id always maps to
the same pseudonym, so A/B analysis, live ADE joins and erasure still work. Kinds keep an agent
id from colliding with a scene or client of the same text; an agent is named within its scene.

The key comes from TRAJ_PSEUDONYM_KEY (compose requires it). Embedded runs without it get a
random key in `<work_dir>/pseudonym.key` (mode 0600), made once. Rotating the key makes new
pseudonyms unlinkable to old ones; `key_id` (a fingerprint, not the key) is stored beside them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from trajectory.exceptions import ConfigError

log = logging.getLogger(__name__)

KEY_ENV = "TRAJ_PSEUDONYM_KEY"
KEY_FILE = "pseudonym.key"
MIN_KEY_CHARS = 32
_SEP = "\x1f"  # unit separator: never in a kind, so "a" + "b:c" != "a:b" + "c"


@dataclass(frozen=True)
class Pseudonymiser:
    """Maps raw identifiers to stable keyed pseudonyms (32 hex characters)."""

    key: bytes

    @cached_property  # read for every logged row: hashed once
    def key_id(self) -> str:
        """A fingerprint of the key (not reversible to it), stored with each row."""
        return hashlib.sha256(b"key-id" + self.key).hexdigest()[:16]

    def pseudonym(self, kind: str, value: str) -> str:
        return hmac.new(self.key, f"{kind}{_SEP}{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def scene(self, scene: str | None) -> str | None:
        return None if scene is None else self.pseudonym("scene", scene)

    def agent(self, scene: str | None, agent_id: int | str) -> str:
        return self.pseudonym("agent", f"{scene or ''}{_SEP}{agent_id}")

    def client(self, client_id: str | None) -> str | None:
        return None if client_id is None else self.pseudonym("client", client_id)

    def routing(self, key: str) -> str:
        return self.pseudonym("routing", key)


def load_pseudonymiser(key: str | None, work_dir: Path) -> Pseudonymiser:
    """The configured key, else the work dir's key file (created once, 0600)."""
    if key is not None:
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters")
        return Pseudonymiser(key.encode())
    path = work_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # never replaces a key another process made first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        log.warning("%s not set: using a generated key in %s (set it in deployment)", KEY_ENV, path)
    text = path.read_text().strip()
    if len(text) < MIN_KEY_CHARS:
        raise ConfigError(f"pseudonym key file {path} is shorter than {MIN_KEY_CHARS} characters")
    return Pseudonymiser(text.encode())
