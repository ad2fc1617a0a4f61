"""HTTP failures of OpenAI-compatible APIs, sorted into worth retrying and not: the status codes that
are transient, the wait a server asks for (Retry-After, retry-after-ms), and the one-line reason
recorded with a failed reply. Shared by the `openai` chat backend and the `batch` backend.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Any

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 600.0  # honour a server's Retry-After, but not for longer than this


def transient(status: int) -> bool:
    """An HTTP status worth retrying: rate limits, timeouts, conflicts and any 5xx."""
    return status in RETRYABLE_STATUS or status >= 500


class Retry(Exception):
    """A failed try worth repeating; `wait` is what the server asked for (Retry-After)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class Fail(Exception):
    """A failed try not worth repeating (e.g. 400: the same request fails the same way).

    `refused_format`: the server's message is about the response format, not the prompt."""

    def __init__(self, reason: str, refused_format: bool = False) -> None:
        super().__init__(reason)
        self.refused_format = refused_format


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# A 500 whose message says the request itself is invalid is not transient.
_VALIDATION_500 = re.compile(r"validat|input should be|literal_error|unsupported|not supported|must be one of|"
                             r"response_format|json_schema|invalid", re.I)
# A refusal of the response format (rather than of the prompt, e.g. its length).
_FORMAT_REFUSED = re.compile(r"response_format|json_schema|json_object|schema|grammar|structured", re.I)


def status_error(status: int, headers: Any, body: str) -> Exception:
    detail = body.strip().replace("\n", " ")[:300]
    try:
        err = json.loads(body)["error"]
        detail = (err["message"] if isinstance(err, dict) else str(err))[:300]
    except (ValueError, KeyError, TypeError):
        pass
    detail = " ".join(str(detail).split())
    reason = f"http {status}: {detail}" if detail else f"http {status}"
    if status == 500 and _VALIDATION_500.search(detail):
        return Fail(reason, refused_format=bool(_FORMAT_REFUSED.search(detail)))
    if transient(status):
        return Retry(reason, retry_after(headers))
    return Fail(reason, refused_format=bool(_FORMAT_REFUSED.search(detail)))


def describe(err: BaseException) -> str:
    name = type(err).__name__
    if "Connect" in name or isinstance(err, OSError):  # aiohttp's ClientConnectorError: nobody listens
        return f"connection: {name}: {err}".rstrip(": ")
    if "Payload" in name or isinstance(err, ValueError):
        return f"malformed: {name}: {err}".rstrip(": ")
    return f"error: {name}: {err}".rstrip(": ")
