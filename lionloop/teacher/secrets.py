"""Secrets held in memory (API keys read from the environment) and their redaction from every text
lionloop stores, prints or logs.

A key never belongs in the run directory, yet it can arrive there by the back door: some proxies
echo the request's Authorization header in an error body, which became a failure reason, a
verdict's raw text and a candidate's reason, and `pool show` printed it. Every error text and
every reply a teacher stores goes through `redact`; the CLI's log handler and crash log too.
"""

from __future__ import annotations

import logging
import os
import re
import threading

MASK = "[redacted]"

_lock = threading.Lock()
_secrets: set[str] = set()

# Credentials in error texts even when they are not ours (another header, a key in a URL).
_CREDENTIAL = re.compile(
    r"(?i)(\b(?:bearer|basic|api[-_]?key|x-api-key|access[-_]?token)\b[\"']?\s*[:=]?\s*[\"']?)([A-Za-z0-9._~+/=-]{8,})"
)


def register(value: str | None) -> None:
    """Remember a secret so that `redact` masks it. Placeholders ("", "EMPTY") are ignored."""
    if value and len(value) >= 4 and value != "EMPTY":
        with _lock:
            _secrets.add(value)


def register_env(name: str | None) -> None:
    """Remember the value of the environment variable `name` (an `api_key_env`), if set."""
    if name:
        register(os.environ.get(name))


def redact(text: str, credentials: bool = True) -> str:
    """`text` with every known secret masked; with `credentials`, also anything shaped like a
    credential after `Bearer`, `api_key=` and the like (for error texts, not for answers)."""
    if not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    if credentials:
        text = _CREDENTIAL.sub(lambda m: m[1] + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter masking secrets in every log record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
