"""Secrets and phone numbers never reach a log line whole."""

from __future__ import annotations

import logging

import pytest

from callcenter.http.logs import MaskingFilter, mask


@pytest.mark.parametrize(
    ("line", "gone", "kept"),
    [
        ("GET /ws/agent?token=3q2-abcDEF_123 200", "3q2-abcDEF_123", "token=[redacted]"),
        ("/api/customers?phone=%2B12125550100", "12125550100", "?phone=+…0100"),
        ("/api/customers/3/phones/+44%2020%207946%200018", "7946", "/phones/+…0018"),
        ("identify: ani (212) 555-0100 matched nobody", "555-0100", "…0100"),
        ("caller +1 212-555-0100 hung up", "212-555", "+…0100"),
        ("ani +12125550100.", "2125550100", "+…0100."),
        ("ani +12125550100x", "2125550100", "+…0100x"),
    ],
)
def test_mask(line: str, gone: str, kept: str) -> None:
    masked = mask(line)
    assert gone not in masked and kept in masked, masked


def test_ids_times_and_short_numbers_stay() -> None:
    line = "call 12345 of queue general waited 31.5 s at 2026-12-04T13:22:50 (offer 42)"
    assert mask(line) == line


def test_the_filter_masks_a_formatted_record() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, "f", 1, "ani %s token=%s", ("+12125550100", "s"), None
    )
    MaskingFilter().filter(record)
    assert record.getMessage() == "ani +…0100 token=[redacted]"


def test_the_filter_leaves_the_access_log_to_its_own_masking() -> None:
    # Status, size and time ("200 46 9.5ms") are digits with spaces: not a phone number.
    line = '127.0.0.1 "GET /readyz" 200 46 9.5ms'
    record = logging.LogRecord("aiohttp.access", logging.INFO, "f", 1, line, None, None)
    MaskingFilter().filter(record)
    assert record.getMessage() == line
