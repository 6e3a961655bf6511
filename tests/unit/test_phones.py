from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.customers.phones import normalize, require
from callcenter.errors import InvalidPhoneNumber


@pytest.mark.parametrize(
    "raw", ["(212) 555-0100", "+1 212-555-0100", "001 212 555 0100", "12125550100", "212.555.0100"]
)
def test_us_spellings_are_one_number(raw: str) -> None:
    assert normalize(raw, "US") == "+12125550100"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+44 20 7946 0018", "US", "+442079460018"),
        ("0044 20 7946 0018", "US", "+442079460018"),
        ("011 44 20 7946 0018", "US", "+442079460018"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("030 123456", "DE", "+4930123456"),
    ],
)
def test_international_and_national_forms(raw: str, region: str, expected: str) -> None:
    assert normalize(raw, region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "restricted",
        "unknown",
        "+unknown",
        "private",
        "12",
        "12345",
        "5550100",
        "not a number",
        "+1 000 000 0000",
    ],
)
def test_withheld_and_invalid_never_normalize(raw: str | None) -> None:
    assert normalize(raw, "US") is None


def test_require_names_the_field() -> None:
    with pytest.raises(InvalidPhoneNumber) as info:
        require("12", "US", field="phones[3]")
    assert info.value.field == "phones[3]"
    assert "'12'" in info.value.detail


_valid_us = st.integers(min_value=0, max_value=9999).map(lambda n: f"212555{n:04d}")


@given(
    _valid_us,
    st.sampled_from(
        [
            "{a}{b}{c}",
            "({a}) {b}-{c}",
            "+1 {a}-{b}-{c}",
            "001 {a} {b} {c}",
            "1{a}{b}{c}",
            "1-{a}-{b}-{c}",
        ]
    ),
)
def test_any_spelling_of_a_number_gives_the_same_key(digits: str, style: str) -> None:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    assert normalize(style.format(a=a, b=b, c=c), "US") == "+1" + digits


@given(st.text(max_size=30))
def test_normalize_never_raises_and_is_idempotent(raw: str) -> None:
    first = normalize(raw, "US")
    if first is not None:
        assert first.startswith("+")
        assert normalize(first, "US") == first
        assert normalize(first, "GB") == first  # E.164 does not depend on the region
        assert phonenumbers.is_valid_number(phonenumbers.parse(first))
