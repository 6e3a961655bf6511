"""``callcenter agent add|list``: an operator creates agents and their tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import asyncpg

from callcenter.queue.agents import agent_for_token


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CALLCENTER_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "callcenter", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_agent_add_prints_a_working_token(db_url: str, pool: asyncpg.Pool[Any]) -> None:
    done = _cli(db_url, "agent", "add", "ada", "--queue", "general")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    token = lines["token"]
    agent_id = int(lines["agent"].split()[0])
    async with pool.acquire() as conn:
        assert await agent_for_token(conn, token) == agent_id

    again = _cli(db_url, "agent", "add", "ada", "--queue", "general")
    assert again.returncode == 2
    assert "exists" in again.stderr
    unknown = _cli(db_url, "agent", "add", "bob", "--queue", "nosuch")
    assert unknown.returncode == 2
    assert "no queue named 'nosuch'" in unknown.stderr

    listed = _cli(db_url, "agent", "list")
    assert listed.returncode == 0
    assert "ada" in listed.stdout
    assert token not in listed.stdout


async def test_agent_add_takes_the_endpoint_the_pbx_dials(
    db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    done = _cli(db_url, "agent", "add", "ada", "--queue", "general", "--endpoint", "PJSIP/1001")
    assert done.returncode == 0, done.stderr
    assert await pool.fetchval("SELECT endpoint FROM agents WHERE name = 'ada'") == "PJSIP/1001"
    bad = _cli(db_url, "agent", "add", "bob", "--queue", "general", "--endpoint", "ring bob")
    assert bad.returncode == 2
    assert "endpoint" in bad.stdout + bad.stderr
    listed = _cli(db_url, "agent", "list")
    assert "PJSIP/1001" in listed.stdout
