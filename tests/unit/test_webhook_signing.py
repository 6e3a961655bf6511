"""Webhook signatures: our generic HMAC scheme and Twilio's, against published vectors."""

from __future__ import annotations

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from callcenter.errors import InvalidSignature
from callcenter.telephony_adapters import signing
from tests.integration.telephony_fakes import twilio_signature

BODY = b'{"id":"evt_1","object":"event","type":"call.queued","data":{"call_id":"c_42"}}'
SECRET = b"whsec_test_secret"
T = 1754400000
#: The same algorithm as Stripe's webhooks; vector recomputed in wire.md section 4a.
EXPECTED = "98e0cf01f1653bdbf1d1e64705488627498324035a880bad74cd4130b88972f6"


def test_signature_matches_the_published_vector() -> None:
    assert signing.signature(SECRET, T, BODY) == EXPECTED
    assert signing.header_value([SECRET], T, BODY) == f"t={T},v1={EXPECTED}"


def _verify(header: str | None, *, now: float = T, body: bytes = BODY) -> int:
    return signing.verify(header, body, SECRET, now=now, tolerance=300)


def test_a_good_signature_passes_and_returns_its_timestamp() -> None:
    assert _verify(f"t={T},v1={EXPECTED}") == T
    # Spaces, unknown schemes and a second (rotated) signature are fine.
    assert _verify(f"t={T}, v0=abc, v1=deadbeef, v1={EXPECTED}") == T


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (None, "missing"),
        ("", "missing"),
        (f"v1={EXPECTED}", "no timestamp"),
        (f"t=yesterday,v1={EXPECTED}", "not an integer"),
        # Too large for a float clock: refused, not an OverflowError (a 500).
        (f"t={'9' * 400},v1={EXPECTED}", "not an integer"),
        (f"t=-{'9' * 400},v1={EXPECTED}", "not an integer"),
        (f"t=\u0661\u0662,v1={EXPECTED}", "not an integer"),
        (f"t={T},v0={EXPECTED}", "no v1 signature"),
        (f"t={T},v1={'0' * 64}", "matches"),
        (f"t={T},v1=ünïcödé", "matches"),
        (f"t={T + 1},v1={EXPECTED}", "matches"),
    ],
)
def test_bad_headers_are_refused_with_a_reason(header: str | None, says: str) -> None:
    with pytest.raises(InvalidSignature) as refused:
        _verify(header)
    assert says in refused.value.detail
    assert refused.value.status == 403


def test_a_changed_body_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        _verify(f"t={T},v1={EXPECTED}", body=BODY + b" ")


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_timestamps_outside_the_tolerance_are_refused_both_ways(skew: int) -> None:
    with pytest.raises(InvalidSignature) as refused:
        _verify(f"t={T},v1={EXPECTED}", now=T + skew)
    assert "away from now" in refused.value.detail
    assert _verify(f"t={T},v1={EXPECTED}", now=T + skew // abs(skew) * 300) == T


# -- Twilio ---------------------------------------------------------------------------

DOC_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675310"),
    ("Digits", "1234"),
    ("From", "+14158675310"),
    ("To", "+18005551212"),
]

INCOMING = (
    "AccountSid=ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&ApiVersion=2010-04-01"
    "&CallSid=CA1b2c3d4e5f60718293a4b5c6d7e8f901&CallStatus=ringing&Called=%2B14155550100"
    "&CalledCity=SAN+FRANCISCO&CalledCountry=US&CalledState=CA&CalledZip=94105"
    "&Caller=%2B12125550123&CallerCity=NEW+YORK&CallerCountry=US&CallerState=NY"
    "&CallerZip=10001&Direction=inbound&From=%2B12125550123&FromCity=NEW+YORK"
    "&FromCountry=US&FromState=NY&FromZip=10001&To=%2B14155550100&ToCity=SAN+FRANCISCO"
    "&ToCountry=US&ToState=CA&ToZip=94105"
)


def _form(text: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(text, keep_blank_values=True, strict_parsing=True)


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        # Twilio's security page: the documented example.
        ("https://example.com/myapp.php?foo=1&bar=2", DOC_PARAMS, "L/OH5YylLD5NRKLltdqwSvS0BnU="),
        # A full incoming-call form, signed by the reference algorithm (wire.md 1a).
        ("https://cc.example.com/twilio/voice/incoming", _form(INCOMING),
         "NzF3CQKE9pzaS1FXH069u6/c4RY="),
        # Repeated keys: sorted by name, then value, duplicates once.
        ("https://mycompany.com/myapp.php?foo=1&bar=2",
         [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"),
          ("Digits", "1234")],
         "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
    ],
)  # fmt: skip
def test_twilio_signatures_match_the_documented_vectors(
    url: str, params: list[tuple[str, str]], expected: str
) -> None:
    # The fakes' signer (independent code) and the validator the service uses agree.
    assert twilio_signature("12345", url, params) == expected
    assert RequestValidator("12345").validate(url, MultiDict(params), expected)
    assert not RequestValidator("54321").validate(url, MultiDict(params), expected)
    assert not RequestValidator("12345").validate(url + "/", MultiDict(params), expected)
