"""An operator's mistakes at start: one line naming what to change, exit code 2.

Each case runs ``callcenter serve`` as an operator would, with one mistake in
its environment, and checks that the whole output is one line naming the
environment variable and what it accepts, that the exit code is 2, and that
nothing was started (no data folder, so no embedded PostgreSQL).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    clean |= {"CALLCENTER_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "callcenter", "serve", *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line(done: subprocess.CompletedProcess[str], tmp_path: Path) -> str:
    out = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, out
    assert len(out.splitlines()) == 1, out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists(), "something started before the mistake was found"
    return out


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "CALLCENTER_PORT",
            "abc",
            "bad setting: CALLCENTER_PORT='abc' is not accepted; "
            "it accepts a whole number from 0 to 65535",
        ),
        (
            "CALLCENTER_TIER_THRESHOLDS",
            '{"gold": 5000, "silver": 1000}',
            'bad setting: CALLCENTER_TIER_THRESHOLDS=\'{"gold": 5000, "silver": 1000}\': '
            "the lowest tier threshold must be 0 or below, so every customer has a tier; "
            "it accepts a JSON object of tier name to the smallest net value",
        ),
        (
            "CALLCENTER_TIER_THRESHOLDS",
            "gold=5000",
            "bad setting: CALLCENTER_TIER_THRESHOLDS='gold=5000' is not valid JSON; "
            "it accepts a JSON object",
        ),
        (
            "CALLCENTER_DEFAULT_REGION",
            "XX",
            "bad setting: CALLCENTER_DEFAULT_REGION='XX': XX is not a country whose phone "
            "numbers are known; it accepts a two-letter ISO country code",
        ),
        (
            "CALLCENTER_ALLOWED_HOSTS",
            "cc.example.com",
            "bad setting: CALLCENTER_ALLOWED_HOSTS='cc.example.com' is not valid JSON; "
            'it accepts a JSON list of host names, e.g. ["cc.example.com"]',
        ),
        (
            "CALLCENTER_AGENT_GRACE_SECONDS",
            "0",
            "bad setting: CALLCENTER_AGENT_GRACE_SECONDS='0' is not accepted; "
            "it accepts a number above 0",
        ),
        (
            "CALLCENTER_LOG_LEVEL",
            "loud",
            "bad setting: CALLCENTER_LOG_LEVEL='loud': loud is not a logging level; "
            "it accepts one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            "CALLCENTER_MIGRATE_ON_START",
            "perhaps",
            "bad setting: CALLCENTER_MIGRATE_ON_START='perhaps' is not accepted; "
            "it accepts true or false",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_its_variable(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    out = _one_line(_serve(tmp_path, **{variable: value}), tmp_path)
    assert out.startswith(expected), out


def test_a_bad_secret_is_named_but_never_shown(tmp_path: Path) -> None:
    # A rule over two settings names both; the secret's value never appears.
    out = _one_line(
        _serve(
            tmp_path,
            CALLCENTER_TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            CALLCENTER_TWILIO_AUTH_TOKEN="s3cret-token-value",
        ),
        tmp_path,
    )
    assert "CALLCENTER_TWILIO_ACCOUNT_SID" in out and "CALLCENTER_PUBLIC_URL" in out
    assert "s3cret" not in out


def test_a_busy_port_is_one_line_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = _one_line(_serve(tmp_path, CALLCENTER_PORT=str(port)), tmp_path)
    assert out == (
        f"cannot listen on 127.0.0.1:{port}: Address already in use "
        "(CALLCENTER_HOST / CALLCENTER_PORT, or --host / --port); not starting"
    )


def test_an_address_this_machine_cannot_bind_is_one_line(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1: no interface here has it, so bind() fails at once.
    out = _one_line(_serve(tmp_path, "--host", "192.0.2.1", "--port", "8080"), tmp_path)
    assert out.startswith("cannot listen on 192.0.2.1:8080: Cannot assign requested address")
