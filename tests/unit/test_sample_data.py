from __future__ import annotations

import csv
import gzip
import json
import re
import statistics
from collections import Counter
from decimal import Decimal
from functools import cache
from pathlib import Path

import phonenumbers
import pytest

from callcenter.customers.sample_data import SampleCustomer, generate, write_csv, write_jsonl

HEADER = "customer_number,name,email,phones,lifetime_value,annual_margin,cost_to_serve"
DOMAINS = {"example.com", "example.org", "example.net"}


@pytest.fixture(scope="module")
def customers() -> list[SampleCustomer]:
    return list(generate(20_000, seed=42))


@cache
def parse_us(raw: str) -> phonenumbers.PhoneNumber:
    """How the importer reads a number: default region US, ``00`` meaning ``+``."""
    text = "+" + raw[2:] if raw.startswith("00") else raw
    return phonenumbers.parse(text, "US")


def e164(raw: str) -> str:
    return phonenumbers.format_number(parse_us(raw), phonenumbers.PhoneNumberFormat.E164)


def test_same_seed_gives_same_customers() -> None:
    assert list(generate(300, seed=7)) == list(generate(300, seed=7))


def test_other_seed_gives_other_customers() -> None:
    a = list(generate(300, seed=7))
    b = list(generate(300, seed=8))
    assert [c.customer_number for c in a] == [c.customer_number for c in b]
    assert sum(x.name != y.name for x, y in zip(a, b, strict=True)) > 200
    assert not {e164(p) for c in a for p in c.phones} & {e164(p) for c in b for p in c.phones}
    assert [c.lifetime_value for c in a] != [c.lifetime_value for c in b]


def test_a_prefix_of_a_longer_run_is_the_shorter_run() -> None:
    assert list(generate(50, seed=3)) == list(generate(200, seed=3))[:50]


def test_count_is_checked() -> None:
    assert list(generate(0)) == []
    with pytest.raises(ValueError, match="count"):
        generate(-1)
    with pytest.raises(ValueError, match="count"):
        generate(100_000_000)


def test_customer_numbers_are_unique_and_shaped(customers: list[SampleCustomer]) -> None:
    numbers = [c.customer_number for c in customers]
    assert len(numbers) == 20_000
    assert len(set(numbers)) == len(numbers)
    assert all(re.fullmatch(r"C\d{8}", n) for n in numbers)
    assert numbers[0] == "C00000001"


def test_names_are_filled(customers: list[SampleCustomer]) -> None:
    assert all(c.name.strip() and c.name == c.name.strip() for c in customers)
    assert len({c.name for c in customers}) > 10_000


def test_every_phone_is_valid_read_with_region_us(customers: list[SampleCustomer]) -> None:
    for c in customers:
        assert c.phones, c
        for raw in c.phones:
            assert phonenumbers.is_valid_number(parse_us(raw)), (c.customer_number, raw)


def test_only_us_numbers_lack_a_country_code(customers: list[SampleCustomer]) -> None:
    national = [p for c in customers for p in c.phones if not p.startswith(("+", "00"))]
    assert len(national) > 1_000
    for raw in national:
        assert phonenumbers.region_code_for_number(parse_us(raw)) == "US", raw


def test_phones_come_from_several_countries(customers: list[SampleCustomer]) -> None:
    regions = Counter(
        phonenumbers.region_code_for_number(parse_us(p)) for c in customers for p in c.phones
    )
    total = sum(regions.values())
    assert 0.6 < regions["US"] / total < 0.8
    assert {"GB", "DE", "FR", "NL", "CA", "AU", "IN", "BR"} <= set(regions)


def test_phones_are_written_in_several_styles(customers: list[SampleCustomer]) -> None:
    phones = [p for c in customers for p in c.phones]
    patterns = {
        "e164": r"\+\d{8,15}",
        "international": r"\+\d{1,3}[ -]\S.*",
        "us national": r"\(\d{3}\) \d{3}-\d{4}",
        "double zero": r"00\d{1,3} .+",
        "us trunk digits": r"1\d{10}",
        "trunk in brackets": r"\+\d{2} \(0\).+",
    }
    for style, pattern in patterns.items():
        assert any(re.fullmatch(pattern, p) for p in phones), style
    non_us = [p for p in phones if phonenumbers.region_code_for_number(parse_us(p)) != "US"]
    assert any(p.startswith("00") for p in non_us)
    assert any(p.startswith("+") and " " in p for p in non_us)


def test_some_customers_have_two_phones_never_the_same_twice(
    customers: list[SampleCustomer],
) -> None:
    counts = Counter(len(c.phones) for c in customers)
    assert set(counts) == {1, 2}
    assert 0.10 < counts[2] / len(customers) < 0.20
    for c in customers:
        assert len({e164(p) for p in c.phones}) == len(c.phones), c


def test_some_phones_are_shared_by_two_customers(customers: list[SampleCustomer]) -> None:
    holders = Counter(e164(p) for c in customers for p in c.phones)
    shared = sum(1 for n in holders.values() if n == 2)
    assert max(holders.values()) == 2
    assert 0.003 < shared / len(holders) < 0.03


def test_value_is_skewed(customers: list[SampleCustomer]) -> None:
    values = [c.lifetime_value for c in customers]
    n = len(values)
    assert 0.005 <= sum(v > 25_000 for v in values) / n <= 0.03
    assert 0.04 <= sum(v > 5_000 for v in values) / n <= 0.12
    assert 0.20 <= sum(v > 1_000 for v in values) / n <= 0.40
    assert statistics.median(values) < 1_000
    assert max(values) > 100_000


def test_money_is_plausible(customers: list[SampleCustomer]) -> None:
    for c in customers:
        for amount in (c.lifetime_value, c.annual_margin, c.cost_to_serve):
            assert amount >= 0, c
            assert amount.as_tuple().exponent == -2, c
        assert c.annual_margin <= c.lifetime_value * Decimal("0.25") + Decimal("0.01"), c
        assert c.annual_margin >= c.lifetime_value * Decimal("0.05") - Decimal("0.01"), c
        assert c.cost_to_serve <= 800, c


def test_most_have_an_email_derived_from_the_name(customers: list[SampleCustomer]) -> None:
    emails = [c.email for c in customers if c.email is not None]
    assert 0.75 < len(emails) / len(customers) < 0.85
    for email in emails:
        local, _, domain = email.partition("@")
        assert domain in DOMAINS, email
        assert re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+?\d*", local), email
    garcias = [c for c in customers if c.name.endswith(" Garcia") and c.email]
    assert garcias
    assert all(c.email and ".garcia" in c.email for c in garcias)


def as_csv_row(c: SampleCustomer) -> dict[str, str]:
    return {
        "customer_number": c.customer_number,
        "name": c.name,
        "email": c.email or "",
        "phones": ";".join(c.phones),
        "lifetime_value": f"{c.lifetime_value:.2f}",
        "annual_margin": f"{c.annual_margin:.2f}",
        "cost_to_serve": f"{c.cost_to_serve:.2f}",
    }


def test_csv_round_trip(tmp_path: Path) -> None:
    customers = list(generate(2_000, seed=5))
    path = tmp_path / "customers.csv"
    assert write_csv(path, customers) == 2_000
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [as_csv_row(c) for c in customers]
    assert any(";" in row["phones"] for row in rows)
    assert any(row["email"] == "" for row in rows)
    assert all(re.fullmatch(r"\d+\.\d{2}", row["lifetime_value"]) for row in rows)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    customers = list(generate(2_000, seed=5))
    path = tmp_path / "customers.jsonl"
    assert write_jsonl(path, customers) == 2_000
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2_000
    for line, c in zip(lines, customers, strict=True):
        record = json.loads(line)
        assert set(record) == set(HEADER.split(","))
        assert record["phones"] == list(c.phones)
        assert record["email"] == c.email
        row = as_csv_row(c)
        for key in ("customer_number", "name", "lifetime_value", "annual_margin", "cost_to_serve"):
            assert record[key] == row[key]


def test_gzipped_files_hold_the_same_text(tmp_path: Path) -> None:
    customers = list(generate(300, seed=9))
    for name, writer in (("c.csv", write_csv), ("c.jsonl", write_jsonl)):
        assert writer(tmp_path / name, customers) == 300
        assert writer(tmp_path / f"{name}.gz", customers) == 300
        plain = (tmp_path / name).read_bytes()
        assert gzip.decompress((tmp_path / f"{name}.gz").read_bytes()) == plain


def test_writers_accept_a_lazy_stream(tmp_path: Path) -> None:
    assert write_csv(tmp_path / "c.csv", generate(1_000, seed=1)) == 1_000
    with (tmp_path / "c.csv").open(encoding="utf-8", newline="") as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 1_000
