"""`callcenter simulate`: refusals, JSON, the staffing answer, the figures' arithmetic."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from callcenter.cli import cli
from callcenter.queue.policy import fifo_policy
from callcenter.simulation import erlang
from callcenter.simulation.confidence import estimate, t975
from callcenter.simulation.des import serve
from callcenter.simulation.figures import quantile, tier_figures
from callcenter.simulation.workload import Workload

SHORT = ["--hours", "0.5", "--rate", "600", "--aht", "120"]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["simulate", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rate", "0"], "--rate"),
        (["--rate", "-20"], "--rate"),
        (["--aht", "0"], "--aht"),
        (["--agents", "0"], "--agents"),
        (["--policy", "lifo"], "--policy"),
        (["--credits", "platinum=100,gold=200"], "--credits"),
        (["--credits", "diamond=10"], "--credits"),
        (["--credits", "gold"], "--credits"),
        (["--target", "80"], "--target"),
        (["--runs", "0"], "--runs"),
    ],
)
def test_bad_input_is_one_line_naming_the_option_and_exit_2(args: list[str], option: str) -> None:
    code, output = _run(*SHORT, *args)
    assert code == 2
    assert output.count("\n") == 1 and option in output, output


def test_staffing_refuses_a_zero_rate() -> None:
    code, output = _run("staffing", "--rate", "0", "--aht", "180")
    assert code == 2 and "--rate" in output


@pytest.mark.parametrize("command", [[], ["staffing", "--aht", "60"]])
def test_a_run_without_a_single_call_is_refused(command: list[str]) -> None:
    # One call an hour for 3.6 s: seed 1, like 999 seeds in 1000, draws no call at all.
    code, output = _run(*command, "--rate", "1", "--hours", "0.001")
    assert code == 2 and "--hours: no call arrives" in output


def test_overload_is_said_and_still_runs_with_abandonment() -> None:
    code, output = _run(
        "--rate", "600", "--aht", "120", "--agents", "10", "--hours", "0.5",
        "--patience", "inf", "--json",
    )  # fmt: skip
    assert code == 0
    assert "overload" in output and "hang up after 90 s" in output
    report = json.loads(output[output.index("{") :])
    assert report["scenario"]["patience"] == 90.0
    everyone = report["reports"][0]["tiers"][-1]["figures"]
    assert everyone["abandon_rate"]["mean"] > 0.3


def test_json_has_every_policy_tier_and_interval() -> None:
    code, output = _run(*SHORT, "--agents", "22", "--runs", "3", "--json")
    assert code == 0
    report = json.loads(output)
    assert [r["policy"] for r in report["reports"]] == ["fifo", "strict", "value"]
    value = report["reports"][2]
    assert value["overtaking_bound"] == 120.0 and value["bound_held"] is True
    tiers = [t["tier"] for t in value["tiers"]]
    assert tiers == ["platinum", "gold", "silver", "standard", "all"]
    asa = value["tiers"][-1]["figures"]["asa"]
    assert asa["half_width"] is not None and asa["half_width"] >= 0
    assert report["erlang_c"]["wait_probability"] == pytest.approx(
        erlang.wait_probability(22, 600 / 3600 * 120)
    )


def test_the_table_names_the_policies_and_checks_the_bound() -> None:
    code, output = _run(*SHORT, "--policy", "value", "--policy", "fifo")
    assert code == 0
    assert "value: largest overtaking" in output and "bound 120 s: held" in output
    assert "strict" not in output


def test_credits_change_the_bound() -> None:
    code, output = _run(*SHORT, "--policy", "value", "--credits", "platinum=30,gold=10", "--json")
    assert code == 0
    assert json.loads(output)["reports"][0]["overtaking_bound"] == 30.0


def test_staffing_names_both_counts() -> None:
    code, output = _run("staffing", "--rate", "720", "--aht", "180", "--hours", "2", "--json")
    assert code == 0
    answer = json.loads(output)
    assert answer["erlang_agents"] == erlang.agents_needed(720 / 3600, 180.0, 0.8, 20.0)
    simulated = {row["agents"]: row for row in answer["simulated_rows"]}
    found = answer["simulated_agents"]
    assert simulated[found]["service_level"] >= 0.8
    assert found - 1 not in simulated or simulated[found - 1]["service_level"] < 0.8


def test_figures_count_a_hang_up_as_missed() -> None:
    load = Workload(
        tiers=("gold", "standard"),
        arrival=[0.0, 1.0, 2.0, 3.0],
        tier=[0, 1, 1, 1],
        patience=[math.inf, math.inf, 5.0, math.inf],
        handle=[30.0, 1.0, 1.0, 1.0],
        value=[100.0, 1.0, 2.0, 3.0],
    )
    out = serve(load, fifo_policy(), 1)
    gold, standard, everyone = tier_figures(load, out, target=28.0)
    assert (gold.calls, gold.answered, gold.asa, gold.service_level) == (1, 1, 0.0, 1.0)
    # Standard: answered at 30 (waited 29) and 31 (waited 28); one hung up at 7.
    assert (standard.answered, standard.abandoned) == (2, 1)
    assert standard.asa == pytest.approx(28.5)
    assert standard.service_level == pytest.approx(1 / 3)
    assert standard.value_abandoned == 2.0 and standard.value_answered == 4.0
    assert everyone.calls == 4 and everyone.wait_max == pytest.approx(29.0)


def test_quantiles_and_intervals() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.95) == 4.0
    assert quantile([], 0.5) is None
    e = estimate([1.0, 2.0, 3.0])
    assert e.mean == 2.0 and e.half_width == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert estimate([5.0]).half_width is None
    assert t975(30) == 2.042 and t975(60) == pytest.approx(2.000, abs=0.001)
    assert t975(120) == pytest.approx(1.980, abs=0.001)


def test_paired_differences_are_run_by_run() -> None:
    code, output = _run(*SHORT, "--agents", "21", "--runs", "4", "--json")
    assert code == 0
    fifo, strict, _ = json.loads(output)["reports"]
    assert all(row["versus_first"] == {} for row in fifo["tiers"])
    for mine, theirs in zip(strict["tiers"], fifo["tiers"], strict=True):
        versus = mine["versus_first"]["asa"]
        # The mean of the differences is the difference of the means...
        assert versus["mean"] == pytest.approx(
            mine["figures"]["asa"]["mean"] - theirs["figures"]["asa"]["mean"]
        )
    # ...but on the same calls it is far surer than either figure alone.
    everyone = strict["tiers"][-1]
    assert everyone["versus_first"]["asa"]["half_width"] < everyone["figures"]["asa"]["half_width"]


BUSY = [*SHORT, "--agents", "21", "--patience", "300"]  # 95 % occupied, patient callers


def _wide(*args: str) -> tuple[int, str]:
    """A run whose tables get the width to show every header whole."""
    result = CliRunner().invoke(cli, ["simulate", *args], env={"COLUMNS": "300"})
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--callback-after", "-1"], "--callback-after"),
        (["--callback-after", "nan"], "--callback-after"),
        (["--callback-after", "100000"], "--callback-after"),
        (["--callback-after", "60", "--callback-take", "1.5"], "--callback-take"),
        (["--callback-after", "60", "--callback-answer", "-0.1"], "--callback-answer"),
        (["--callback-after", "60", "--callback-attempts", "0"], "--callback-attempts"),
        (["--callback-after", "60", "--callback-attempts", "11"], "--callback-attempts"),
        (["--callback-after", "60", "--callback-retry", "0"], "--callback-retry"),
        (["--callback-after", "60", "--callback-ring", "2"], "--callback-ring"),
        (["--callback-after", "60", "--callback-tiers", "gold,diamond"], "--callback-tiers"),
        (["--callback-take", "0.5"], "--callback-take"),
        (["--compare-callbacks"], "--compare-callbacks"),
    ],
)
def test_bad_callback_options_are_one_line_naming_the_option(args: list[str], option: str) -> None:
    code, output = _run(*SHORT, *args)
    assert code == 2
    assert output.count("\n") == 1 and option in output, output


def test_json_without_callbacks_says_so_and_counts_none() -> None:
    code, output = _run(*BUSY, "--policy", "fifo", "--json")
    assert code == 0
    report = json.loads(output)
    assert report["callbacks"] is None and report["without_callbacks"] is None
    everyone = report["reports"][0]["tiers"][-1]
    assert everyone["versus_without_callbacks"] == {}
    assert everyone["figures"]["callbacks"]["mean"] == 0
    assert everyone["figures"]["lost_rate"] == everyone["figures"]["abandon_rate"]


def test_json_compares_each_policy_without_and_with_callbacks_on_the_same_calls() -> None:
    code, output = _run(
        *BUSY, "--policy", "fifo", "--policy", "value", "--runs", "3", "--json",
        "--callback-after", "30", "--callback-take", "0.6", "--callback-answer", "0.5",
        "--callback-attempts", "2", "--callback-retry", "60", "--callback-tiers", "silver,standard",
        "--compare-callbacks",
    )  # fmt: skip
    assert code == 0
    report = json.loads(output)
    assert report["callbacks"] == {
        "after_seconds": 30.0,
        "tiers": ["silver", "standard"],
        "take": 0.6,
        "answer": 0.5,
        "attempts": 2,
        "retry_seconds": 60.0,
        "ring_seconds": 30.0,
        "pickup_seconds": 10.0,
    }
    with_cb, without = report["reports"], report["without_callbacks"]
    assert [r["policy"] for r in with_cb] == [r["policy"] for r in without] == ["fifo", "value"]
    for mine, plain in zip(with_cb, without, strict=True):
        rows = {row["tier"]: row for row in mine["tiers"]}
        # Only the named tiers were offered it.
        assert rows["platinum"]["figures"]["offered"]["mean"] == 0
        assert rows["gold"]["figures"]["offered"]["mean"] == 0
        everyone = rows["all"]["figures"]
        assert everyone["callbacks"]["mean"] > 0 and everyone["callback_failed"]["mean"] > 0
        assert everyone["rings"]["mean"] >= everyone["callbacks"]["mean"]
        # The same calls: the counts agree, and the difference is taken run by run.
        base = plain["tiers"][-1]["figures"]
        assert base["calls"] == everyone["calls"] and base["callbacks"]["mean"] == 0
        effect = rows["all"]["versus_without_callbacks"]
        assert set(effect) == {
            "service_level", "abandon_rate", "lost_rate", "asa", "value_abandoned",
        }  # fmt: skip
        assert effect["service_level"]["mean"] == pytest.approx(
            everyone["service_level"]["mean"] - base["service_level"]["mean"]
        )
        assert plain["tiers"][-1]["versus_without_callbacks"] == {}


def test_the_table_puts_without_and_with_callbacks_side_by_side() -> None:
    code, output = _wide(
        *BUSY, "--policy", "value", "--callback-after", "30", "--compare-callbacks"
    )
    assert code == 0
    assert "SL without" in output and "SL with" in output and "cb failed" in output
    assert "callbacks: offered to every tier when the estimated wait at arrival" in output
    assert "value: largest overtaking" in output and ": held" in output


def test_callbacks_without_the_comparison_add_their_counts_to_the_policy_table() -> None:
    code, output = _wide(*BUSY, "--policy", "fifo", "--callback-after", "30")
    assert code == 0
    assert "callbacks" in output and "on ring" in output and "SL without" not in output
