"""Logs without secrets or whole phone numbers.

The access log names every request; left alone it would keep agents'
``?token=`` and callers' numbers (``?phone=%2B1…``, ``/phones/+1…``) in
clear, in files that outlive the data they describe. ``AccessLogger`` writes
each request with its query's secrets replaced and phone numbers cut to their
last digits; ``MaskingFilter`` does the same to every other log line, so an
``ani`` in a warning is masked too.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

#: Query parameters whose value is a secret, whatever else is in the URL.
_SECRET_PARAMS = re.compile(r"(?i)\b(token|password|secret|signature|auth)=[^&\s\"']*")
#: A phone number as people and URLs write it: 7 or more digits, with the usual
#: separators and an optional ``+`` (written ``%2B`` in a URL).
_PHONE = re.compile(r"(?<![\w.:-])\+?\d[\d\s().-]{5,}\d(?!\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: aiohttp's access log, which ``AccessLogger`` masks itself.
ACCESS_LOGGER = "aiohttp.access"
#: Digits of a number left in sight, enough to tell two callers apart in a log.
KEEP = 4


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if _DATE.fullmatch(text.strip()):
        return text  # a date (2026-12-04), not a number anyone dials
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7:
        return match.group(0)
    return "+" * text.startswith("+") + "…" + digits[-KEEP:]


def mask(text: str) -> str:
    """``text`` with secret parameters redacted and phone numbers cut to their last digits.

    URL escapes are undone first (``%2B1%20212…`` is a number too), so a masked
    URL reads as text, not as the exact path the client sent.
    """
    text = _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    return _PHONE.sub(_mask_phone, unquote(text))


class AccessLogger(AbstractAccessLogger):
    """One line per request: who connected, what they asked (masked), the answer, the time."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.1fms',
            request.remote,
            request.method,
            mask(request.rel_url.raw_path_qs),
            response.status,
            response.body_length,
            time * 1000,
        )


class MaskingFilter(logging.Filter):
    """Masks secrets and phone numbers in every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == ACCESS_LOGGER:
            return True  # masked where it is written (the URL only: status, size and time stay)
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
