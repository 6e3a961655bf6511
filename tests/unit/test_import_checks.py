"""The importer's fast checks decide exactly as the library calls they stand in for."""

from __future__ import annotations

from collections.abc import Callable

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.customers.importer import normalize_email
from callcenter.customers.phones import normalize


def _outcome(check: Callable[[str], str], text: str) -> str:
    try:
        return "ok " + check(text)
    except EmailNotValidError as exc:
        return f"{type(exc).__name__}: {exc}"


def _library(text: str) -> str:
    return validate_email(text, check_deliverability=False).normalized


@pytest.mark.parametrize(
    "text",
    [
        "ada@example.com",
        "ADA@Example.COM",
        "John.Doe+crm@mail.example.org",
        "INFO@example.com",  # RFC 2142 names are lower-cased
        "Sales@example.com",
        "a!#$%&'*+/=?^`{|}~-@example.com",
        "not-an-email",
        "@example.com",
        "ada@",
        "ada@@example.com",
        "a..b@example.com",
        ".ada@example.com",
        "ada.@example.com",
        '"ada lovelace"@example.com',
        "Ada <ada@example.com>",
        "ada@[192.0.2.1]",
        "ada@localhost",
        "ada@example",
        "ada@example.invalid",
        "ada@foo.arpa",
        "ada@exa_mple.com",
        "ada@-example.com",
        "ada@example..com",
        "ada@example.com.",
        "ada@ab--cd.com",
        "ada@xn--bcher-kva.de",
        "ada@xn--zz.com",
        "josé@example.com",
        "ada@bücher.de",
        "ada\u0301@example.com",
        "ada＠example.com",
        "x" * 64 + "@example.com",
        "x" * 65 + "@example.com",
        "x" * 240 + "@example.com",  # too long as a whole
        "x@" + "b" * 63 + ".com",
        "x@" + "b" * 64 + ".com",
        "x" * 60 + "@" + ("c" * 60 + ".") * 3 + "com",
        "x" * 10 + "@" + ("c" * 60 + ".") * 3 + "xn--bcher-kva.de",
    ],
)
def test_email_fast_path_decides_as_validate_email(text: str) -> None:
    assert _outcome(normalize_email, text) == _outcome(_library, text)


_EMAIL_PARTS = [*"aZ0.-_+'@\"<>[] \\éß", "\u0301", "xn--", "example", ".com", "INFO", ".invalid"]
_email_parts = st.sampled_from([*_EMAIL_PARTS, "1.2.3.4", "x" * 70])


@settings(max_examples=500)
@given(st.lists(_email_parts, min_size=1, max_size=10).map("".join))
def test_any_email_is_decided_as_by_validate_email(text: str) -> None:
    text = text.strip()
    if text:
        assert _outcome(normalize_email, text) == _outcome(_library, text)


def _both_readings(raw: str, region: str) -> str | None:
    """``normalize`` for a ``00…`` number as it was: the national reading first."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    for candidate in (raw.strip(), "+" + digits[2:]):
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from([*"0123456789", " ", "-", "(", ")", ".", "x", "A"]), min_size=0, max_size=18
    ).map(lambda chars: "00" + "".join(chars)),
    st.sampled_from(["US", "CA", "JM", "PR"]),
)
def test_a_00_number_in_north_america_reads_as_with_both_readings(raw: str, region: str) -> None:
    assert normalize(raw, region) == _both_readings(raw, region)


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("0044 20 7946 0018", "US"),
        ("001 212 555 0100", "US"),
        ("0033 5 04 83 56 14", "CA"),
        ("0044 20 7946 0018", "GB"),  # elsewhere "00" is the library's own prefix
        ("0033 5 04 83 56 14", "DE"),
    ],
)
def test_real_00_numbers_read_as_with_both_readings(raw: str, region: str) -> None:
    expected = _both_readings(raw, region)
    assert expected is not None
    assert normalize(raw, region) == expected
