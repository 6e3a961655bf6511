"""Seeded, realistic CRM customers for the demo, the tests and the benchmarks.

The demo, the tests and the 1M-row benchmark must all see the same kind of
data, and it has to look like a real CRM export rather than a tidy fixture:

* value is heavily skewed - a few very valuable customers, a long tail of
  small ones (lognormal: roughly 1 % above 25,000, 8 % above 5,000, 30 %
  above 1,000, median a few hundred), because tiers and queue credit only
  mean something on skewed data;
* phones come from several countries (mostly US) and are written in many
  styles (``+12125550147``, ``+1 212-555-0147``, ``(212) 555-0147``,
  ``001 212 555 0147``, ``12125550147``, ``+44 (0)20 7946 0018`` ...), some
  customers have two, and about 1 % of the numbers are shared by two
  customers of one household - exactly what identification has to cope with;
* about a fifth of the customers have no e-mail.

Every number is valid for the ``phonenumbers`` library. A number written
without its country code is always a US number, because the importer parses
with the default region US; all others carry ``+CC`` or ``00CC``.

Everything is drawn from one ``random.Random(seed)`` and one seeded ``Faker``,
so the same ``count`` and ``seed`` give the same customers, byte for byte
once written (for one version of Python and Faker). ``generate`` is lazy;
its memory grows only with the set of numbers handed out (for uniqueness),
about 90 MB for a million customers.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Literal

import phonenumbers
from faker import Faker
from phonenumbers import PhoneNumber, PhoneNumberFormat

from callcenter.customers.models import COLUMNS

_MAX_COUNT = 99_999_999  # "C" + 8 digits
# First and last names drawn from Faker once per call: most customers are US
# customers; the other locales need fewer (Faker's en_US names are the slow ones).
_NAME_POOL = 2_000
_NAME_POOL_ABROAD = 400
_EMAIL_SHARE = 0.80
_SECOND_PHONE_SHARE = 0.15
# A household member takes over an earlier customer's number. With 1.15 phones
# per customer, 1.15 % of customers doing so makes about 1 % of the distinct
# numbers shared.
_HOUSEHOLD_SHARE = 0.0115
_HOUSEHOLD_POOL = 2_048  # earlier numbers a household member may share
_MOBILE_SHARE = 0.65  # of the first phone, outside North America
# Lifetime value: lognormal with median e**5.95 ~ 384; P(>1,000) ~ 30 %,
# P(>5,000) ~ 8 %, P(>25,000) ~ 1.1 %. A few customers have bought nothing yet.
_LTV_MU = 5.95
_LTV_SIGMA = 1.83
_LTV_ZERO_SHARE = 0.02
_LTV_CAP_CENTS = 1_000_000_000  # 10 million
_MARGIN_RATE = (0.05, 0.25)
_COST_CAP_CENTS = 80_000  # cost to serve: 0 - 800, most of it small
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")

_NumberPattern = tuple[str, int]  # prefix of the national number, its full length
_Kind = Literal["mobile", "fixed"]


@dataclass(frozen=True)
class SampleCustomer:
    customer_number: str
    name: str
    email: str | None
    phones: tuple[str, ...]
    lifetime_value: Decimal
    annual_margin: Decimal
    cost_to_serve: Decimal


@dataclass(frozen=True)
class _Country:
    region: str
    calling_code: int
    locale: str
    weight: int
    mobile: tuple[_NumberPattern, ...]
    fixed: tuple[_NumberPattern, ...]


def _nanp(area_codes: str) -> tuple[_NumberPattern, ...]:
    return tuple((code, 10) for code in area_codes.split())


_US_AREA_CODES = _nanp(
    "201 202 203 205 206 212 213 214 215 216 217 224 225 239 240 248 267 281 301 303 305"
    " 310 312 313 314 317 323 330 336 347 352 360 404 405 407 410 412 414 415 424 425 469"
    " 470 480 502 503 504 508 510 512 513 516 520 530 540 559 561 562 585 602 603 608 610"
    " 612 614 615 617 619 626 646 650 651 661 678 702 703 704 713 714 716 718 720 727 732"
    " 734 757 770 773 781 786 801 804 808 813 816 818 832 843 847 850 857 858 860 904 908"
    " 909 910 913 914 916 917 919 925 929 937 941 949 952 954 970 971 972 973 978"
)
_CA_AREA_CODES = _nanp(
    "204 226 250 289 306 403 416 418 437 438 450 506 514 519 587 604 613 647 705 709 778"
    " 780 819 902 905"
)

# Most numbers are US numbers; the rest come from the countries our callers
# live in. Patterns are prefixes of real ranges; the random rest of a number is
# kept only when ``phonenumbers`` says it is valid.
_COUNTRIES = (
    _Country("US", 1, "en_US", 70, _US_AREA_CODES, _US_AREA_CODES),
    _Country("CA", 1, "en_CA", 5, _CA_AREA_CODES, _CA_AREA_CODES),
    _Country(
        "GB",
        44,
        "en_GB",
        6,
        (("71", 10), ("73", 10), ("74", 10), ("75", 10), ("77", 10), ("78", 10), ("79", 10)),
        (("207", 10), ("208", 10), ("203", 10), ("121", 10), ("161", 10), ("113", 10)),
    ),
    _Country(
        "DE",
        49,
        "de_DE",
        4,
        (("151", 11), ("152", 11), ("160", 10), ("170", 10), ("171", 10), ("176", 11)),
        (("30", 10), ("40", 10), ("89", 10), ("69", 10), ("221", 10)),
    ),
    _Country(
        "FR",
        33,
        "fr_FR",
        4,
        (("6", 9), ("7", 9)),
        (("1", 9), ("2", 9), ("3", 9), ("4", 9), ("5", 9)),
    ),
    _Country(
        "NL",
        31,
        "nl_NL",
        2,
        (("6", 9),),
        (("20", 9), ("10", 9), ("70", 9), ("30", 9)),
    ),
    _Country(
        "AU",
        61,
        "en_AU",
        3,
        (("4", 9),),
        (("29", 9), ("28", 9), ("39", 9), ("38", 9), ("73", 9), ("89", 9)),
    ),
    _Country(
        "IN",
        91,
        "en_IN",
        4,
        (("9", 10), ("8", 10), ("7", 10)),
        (("11", 10), ("22", 10), ("80", 10), ("44", 10)),
    ),
    _Country(
        "BR",
        55,
        "pt_BR",
        2,
        (("119", 11), ("219", 11), ("319", 11), ("419", 11), ("519", 11), ("619", 11)),
        (("113", 10), ("213", 10), ("313", 10), ("413", 10), ("513", 10), ("613", 10)),
    ),
)
_COUNTRY_WEIGHTS = tuple(c.weight for c in _COUNTRIES)

# How people write numbers. Styles without a country code exist only for the
# US: the importer parses with default region US. "trunk" writes the national
# trunk prefix: "1 ..." in the US, "+44 (0)20 ..." elsewhere.
_Style = Literal[
    "e164",
    "international",
    "international_spaces",
    "international_parens",
    "international_dashes",
    "national",
    "dots",
    "digits",
    "trunk",
    "trunk_dashes",
    "double_zero",
]
_US_STYLES: tuple[tuple[_Style, int], ...] = (
    ("e164", 12),
    ("international", 14),
    ("international_spaces", 5),
    ("international_parens", 4),
    ("national", 22),
    ("dots", 8),
    ("digits", 8),
    ("trunk", 10),
    ("trunk_dashes", 7),
    ("double_zero", 10),
)
_CA_STYLES: tuple[tuple[_Style, int], ...] = (
    ("e164", 30),
    ("international", 35),
    ("international_spaces", 10),
    ("international_parens", 10),
    ("double_zero", 15),
)
_WORLD_STYLES: tuple[tuple[_Style, int], ...] = (
    ("e164", 25),
    ("international", 30),
    ("international_dashes", 10),
    ("double_zero", 20),
    ("trunk", 15),
)


@dataclass(frozen=True)
class _Phone:
    country: _Country
    number: PhoneNumber


@dataclass(frozen=True)
class _Household:
    phone: _Phone
    last_name: tuple[str, str]  # as written, and folded for e-mail addresses


def generate(count: int, seed: int = 42) -> Iterator[SampleCustomer]:
    """Yield ``count`` customers ``C00000001``, ``C00000002``, ... drawn from ``seed``.

    About 40,000 customers a second: Faker is asked only for pools of names
    up front (0.2 s), and phone candidates are checked with ``phonenumbers``
    as number objects, without parsing any text.
    """
    if not 0 <= count <= _MAX_COUNT:
        raise ValueError(f"count must be between 0 and {_MAX_COUNT}, got {count}")
    return _generate(count, seed)


def _generate(count: int, seed: int) -> Iterator[SampleCustomer]:
    rng = random.Random(seed)
    names = _name_pools(seed)
    seen: set[int] = set()
    households: list[_Household] = []
    for index in range(1, count + 1):
        household: _Household | None = None
        if households and rng.random() < _HOUSEHOLD_SHARE:
            household = households.pop(rng.randrange(len(households)))
        if household is not None:
            country = household.phone.country
            phones = [household.phone]
            last = household.last_name
        else:
            country = rng.choices(_COUNTRIES, _COUNTRY_WEIGHTS)[0]
            first_kind: _Kind = "mobile" if rng.random() < _MOBILE_SHARE else "fixed"
            phones = [_fresh_phone(rng, country, first_kind, seen)]
            last = rng.choice(names[country.locale][1])
        first = rng.choice(names[country.locale][0])
        if rng.random() < _SECOND_PHONE_SHARE:
            phones.append(_fresh_phone(rng, country, "fixed", seen))
        # Only numbers nobody shares yet go into the pool: a number is shared by two at most.
        for phone in phones[1:] if household is not None else phones:
            if len(households) < _HOUSEHOLD_POOL:
                households.append(_Household(phone, last))
            elif rng.random() < 0.5:
                households[rng.randrange(_HOUSEHOLD_POOL)] = _Household(phone, last)
        lifetime, margin, cost = _money(rng)
        yield SampleCustomer(
            customer_number=f"C{index:08d}",
            name=f"{first[0]} {last[0]}",
            email=_email(rng, first[1], last[1]),
            phones=tuple(_write_phone(rng, phone) for phone in phones),
            lifetime_value=lifetime,
            annual_margin=margin,
            cost_to_serve=cost,
        )


def write_csv(path: Path, customers: Iterable[SampleCustomer]) -> int:
    """Write ``customers`` as the importer's CSV (gzipped for ``.gz``); return the row count."""
    rows = 0
    with _open_for_writing(path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for c in customers:
            writer.writerow(
                (
                    c.customer_number,
                    c.name,
                    c.email or "",
                    ";".join(c.phones),
                    f"{c.lifetime_value:.2f}",
                    f"{c.annual_margin:.2f}",
                    f"{c.cost_to_serve:.2f}",
                )
            )
            rows += 1
    return rows


def write_jsonl(path: Path, customers: Iterable[SampleCustomer]) -> int:
    """Write ``customers`` as JSON lines (gzipped for ``.gz``); return the row count."""
    rows = 0
    with _open_for_writing(path) as fh:
        for c in customers:
            record = {
                "customer_number": c.customer_number,
                "name": c.name,
                "email": c.email,
                "phones": list(c.phones),
                "lifetime_value": f"{c.lifetime_value:.2f}",
                "annual_margin": f"{c.annual_margin:.2f}",
                "cost_to_serve": f"{c.cost_to_serve:.2f}",
            }
            fh.write(json.dumps(record, ensure_ascii=False))
            fh.write("\n")
            rows += 1
    return rows


def _open_for_writing(path: Path) -> IO[str]:
    if path.suffix != ".gz":
        return path.open("w", encoding="utf-8", newline="")
    # mtime 0: the same customers give the same bytes.
    return io.TextIOWrapper(gzip.GzipFile(path, "wb", mtime=0), encoding="utf-8", newline="")


def _name_pools(seed: int) -> dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """Per locale, first and last names as (written, folded for e-mail)."""
    locales = sorted({c.locale for c in _COUNTRIES})
    fake = Faker(locales)
    fake.seed_instance(seed)
    pools: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}
    for locale in locales:
        local = fake[locale]
        size = _NAME_POOL if locale == _COUNTRIES[0].locale else _NAME_POOL_ABROAD
        firsts = [_with_slug(local.first_name()) for _ in range(size)]
        lasts = [_with_slug(local.last_name()) for _ in range(size)]
        pools[locale] = (firsts, lasts)
    return pools


def _with_slug(name: str) -> tuple[str, str]:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = "".join(ch for ch in ascii_name.lower() if ch.isalnum())
    return name, slug or "customer"


def _email(rng: random.Random, first: str, last: str) -> str | None:
    if rng.random() >= _EMAIL_SHARE:
        return None
    suffix = str(rng.randrange(1, 1000)) if rng.random() < 0.7 else ""
    return f"{first}.{last}{suffix}@{rng.choice(_EMAIL_DOMAINS)}"


def _money(rng: random.Random) -> tuple[Decimal, Decimal, Decimal]:
    if rng.random() < _LTV_ZERO_SHARE:
        lifetime = 0
    else:
        lifetime = min(round(rng.lognormvariate(_LTV_MU, _LTV_SIGMA) * 100), _LTV_CAP_CENTS)
    margin = round(lifetime * rng.uniform(*_MARGIN_RATE))
    cost = round(rng.betavariate(1.3, 5.0) * _COST_CAP_CENTS)
    return _cents(lifetime), _cents(margin), _cents(cost)


def _cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _fresh_phone(rng: random.Random, country: _Country, kind: _Kind, seen: set[int]) -> _Phone:
    """A valid number of ``country`` that no earlier customer was given."""
    patterns = country.mobile if kind == "mobile" else country.fixed
    for _ in range(1_000):
        prefix, length = rng.choice(patterns)
        rest = length - len(prefix)
        national = int(prefix) * 10**rest + rng.randrange(10**rest)
        key = country.calling_code * 10**13 + national
        if key in seen:
            continue
        number = PhoneNumber(country_code=country.calling_code, national_number=national)
        if phonenumbers.is_valid_number_for_region(number, country.region):
            seen.add(key)
            return _Phone(country, number)
    raise RuntimeError(f"no valid {kind} number for {country.region} in 1,000 tries")


def _write_phone(rng: random.Random, phone: _Phone) -> str:
    """``phone`` in one of the styles people and CRMs use for its country."""
    region = phone.country.region
    styles = _US_STYLES if region == "US" else _CA_STYLES if region == "CA" else _WORLD_STYLES
    style = rng.choices(styles, [weight for _, weight in styles])[0][0]
    number = phone.number
    if style == "e164":
        return f"+{number.country_code}{number.national_number}"
    if number.country_code == 1:
        nsn = str(number.national_number)
        area, exchange, line = nsn[:3], nsn[3:6], nsn[6:]
        match style:
            case "international":
                return f"+1 {area}-{exchange}-{line}"
            case "international_spaces":
                return f"+1 {area} {exchange} {line}"
            case "international_parens":
                return f"+1 ({area}) {exchange}-{line}"
            case "double_zero":
                return f"001 {area} {exchange} {line}"
        # Without the country code: US numbers only (see _US_STYLES).
        assert region == "US", style
        match style:
            case "national":
                return f"({area}) {exchange}-{line}"
            case "dots":
                return f"{area}.{exchange}.{line}"
            case "digits":
                return nsn
            case "trunk":
                return f"1{nsn}"
            case _:
                return f"1-{area}-{exchange}-{line}"
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    code, _, rest = international.partition(" ")
    match style:
        case "international":
            return international
        case "international_dashes":
            return f"{code}-{rest.replace(' ', '-')}"
        case "double_zero":
            return f"00{code[1:]} {rest}"
        case _:
            # "trunk": "+44 (0)20 7946 0018"; every country here outside NANP dials 0.
            return f"{code} (0){rest}"
