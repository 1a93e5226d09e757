"""`trajectory api-key`: a new key and its digest, or the digest of a key on stdin."""

from __future__ import annotations

import hashlib

from typer.testing import CliRunner

from serving.config import ServingSettings
from trajectory.cli import app


def test_new_key_comes_with_the_digest_the_service_accepts() -> None:
    result = CliRunner().invoke(app, ["api-key"])
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    key, digest = lines["key"], lines["hash"]
    assert len(key) >= 40 and digest == hashlib.sha256(key.encode()).hexdigest()
    settings = ServingSettings(api_keys={digest: "admin"})  # validated as a SHA-256 hex digest
    assert settings.api_keys[digest] == "admin"
    again = CliRunner().invoke(app, ["api-key"]).stdout
    assert key not in again  # a fresh key each time


def test_hash_of_a_key_read_from_stdin() -> None:
    result = CliRunner().invoke(app, ["api-key", "--hash-stdin"], input="s3cret-key\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"hash  {hashlib.sha256(b's3cret-key').hexdigest()}\n"


def test_empty_stdin_is_a_one_line_error() -> None:
    result = CliRunner().invoke(app, ["api-key", "--hash-stdin"], input="\n")
    assert result.exit_code == 2 and result.stderr.strip() == "error: no key on stdin"
