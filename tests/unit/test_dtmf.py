"""Putting single DTMF keys together into a customer number."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callcenter.telephony_adapters.dtmf import CallbackChoice, Choice, DigitCollector


def test_hash_ends_the_number() -> None:
    c = DigitCollector(timeout=5)
    assert [c.press(k, t) for t, k in enumerate("1234")] == [None] * 4
    assert c.press("#", 4.5) == "1234"
    assert c.digits == "" and c.deadline is None


def test_a_pause_ends_the_number() -> None:
    c = DigitCollector(timeout=5)
    c.press("4", 10.0)
    c.press("2", 11.0)
    assert c.deadline == 16.0
    assert c.expire(15.9) is None and c.digits == "42"
    assert c.expire(16.0) == "42"
    assert c.expire(30.0) is None


def test_star_starts_again_and_letters_are_ignored() -> None:
    c = DigitCollector(timeout=5)
    for key in "99*":
        c.press(key, 0)
    assert c.digits == "" and c.deadline is None
    for key in "1A2D":
        c.press(key, 1)
    assert c.press("#", 2) == "12"


def test_hash_alone_is_no_number() -> None:
    c = DigitCollector(timeout=5)
    assert c.press("#", 0) is None


def test_the_longest_number_ends_itself() -> None:
    c = DigitCollector(timeout=5, max_digits=4)
    assert c.press("1", 0) is None
    c.press("2", 0)
    c.press("3", 0)
    assert c.press("4", 0) == "1234"
    assert c.digits == ""


@given(st.lists(st.sampled_from("0123456789*#ABCD"), max_size=40))
def test_numbers_are_the_digits_typed_since_the_last_star_or_end(keys: list[str]) -> None:
    c = DigitCollector(timeout=5, max_digits=100)
    got: list[str] = []
    expected: list[str] = []
    current = ""
    for key in keys:
        number = c.press(key, 0)
        if number is not None:
            got.append(number)
        if key == "#":
            if current:
                expected.append(current)
            current = ""
        elif key == "*":
            current = ""
        elif key.isdigit():
            current += key
    assert got == expected
    assert c.digits == current


# -- the number a callback rings ------------------------------------------------------


def test_a_lone_hash_or_silence_confirms_the_calling_number() -> None:
    c = CallbackChoice(timeout=8, since=100.0)
    assert c.press("#", 101.0) == Choice(None)
    quiet = CallbackChoice(timeout=8, since=100.0)
    assert quiet.deadline == 108.0
    assert quiet.expire(107.9) is None
    assert quiet.expire(108.0) == Choice(None)


def test_digits_then_hash_or_a_pause_are_another_number() -> None:
    c = CallbackChoice(timeout=8, since=0.0)
    assert [c.press(k, 1.0 + i) for i, k in enumerate("2125550")] == [None] * 7
    assert c.press("#", 9.0) == Choice("2125550")
    paused = CallbackChoice(timeout=8, since=0.0)
    paused.press("9", 5.0)
    # Each key restarts the window: the pause counts from the last one.
    assert paused.expire(8.0) is None
    assert paused.expire(13.0) == Choice("9")


def test_star_wipes_the_typed_number_and_the_prompt_restarts_the_window() -> None:
    c = CallbackChoice(timeout=8, since=0.0)
    for i, key in enumerate("55*A"):
        assert c.press(key, float(i)) is None
    assert c.digits == ""
    c.restart(20.0)
    assert c.expire(27.0) is None
    assert c.expire(28.0) == Choice(None)
    long = CallbackChoice(timeout=8, since=0.0, max_digits=3)
    assert [long.press(k, 0.0) for k in "123"] == [None, None, Choice("123")]
