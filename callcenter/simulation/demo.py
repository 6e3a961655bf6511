"""``callcenter demo``: a working contact center in one command.

The demo owns everything it starts: an embedded PostgreSQL in its own data
folder, the service as a child process (``callcenter serve``, exactly what an
operator runs), and the simulated PBX and agents in this process. The
service is a separate process so the simulation's own CPU does not sit on the
service's event loop. Whatever happens, Ctrl-C included, the generators stop,
the summary is printed, and the service and the database are stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
from rich.console import Console
from rich.live import Live

from callcenter.config import Settings, shipped_bank
from callcenter.customers.importer import import_file
from callcenter.customers.store import CustomerRules
from callcenter.db.lifecycle import database_url, run_migrations
from callcenter.db.pool import create_pool
from callcenter.simulation import display
from callcenter.simulation.pbx import Pbx
from callcenter.simulation.population import Population, load
from callcenter.simulation.summary import Summary
from callcenter.simulation.traffic import Api, Plan, Traffic, new_run_id, set_up


class DemoError(Exception):
    """A reason not to start, said in one line (exit code 2)."""


@dataclass
class DemoOptions:
    plan: Plan
    duration: float | None
    port: int
    data_dir: Path
    keep: bool
    json_out: Path | None = None


def customers_file() -> Path:
    """The shipped 10,000 sample customers, next to the shipped question bank."""
    return shipped_bank().with_name("customers-10k.csv")


def check_options(options: DemoOptions) -> None:
    """Everything that can be refused before anything starts."""
    if options.duration is not None and options.duration <= 0:
        raise DemoError(f"--duration must be more than 0 seconds, not {options.duration:g}")
    if options.plan.rate <= 0:
        raise DemoError(f"--rate must be more than 0 calls a second, not {options.plan.rate:g}")
    if options.plan.agents < 1:
        raise DemoError(f"--agents must be at least 1, not {options.plan.agents}")
    with socket.socket() as probe:
        # As the service binds: connections of a run that just ended do not block it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", options.port))
        except OSError as exc:
            raise DemoError(
                f"cannot listen on 127.0.0.1:{options.port}: {exc.strerror}; "
                "pick another with --port"
            ) from None
    prepare_folder(options.data_dir, keep=options.keep)


def prepare_folder(folder: Path, *, keep: bool) -> None:
    """A data folder the demo may use: writable, no database running in it, and
    emptied unless ``keep``."""
    pgdata = folder / "pgdata"
    owner = running_postmaster(pgdata)
    if owner is not None:
        raise DemoError(
            f"{folder} is in use: a PostgreSQL (pid {owner}) runs on {pgdata}; "
            "stop it, or give the demo another --data-dir"
        )
    try:
        if folder.exists() and not keep:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise DemoError(f"the data folder {folder} cannot be used: {exc.strerror}") from None


def running_postmaster(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None


async def run(options: DemoOptions, console: Console) -> Summary | None:
    """The whole demo; the summary, or None when it was stopped before any traffic."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    began = time.monotonic()
    settings = Settings(data_dir=options.data_dir, database_url=None)
    rules = CustomerRules.from_settings(settings)
    base = f"http://127.0.0.1:{options.port}"
    secret = secrets.token_urlsafe(24)
    admin_token = secrets.token_urlsafe(24)
    plan = options.plan
    pbx = Pbx(
        base,
        secret,
        random.Random(plan.seed + 1),
        mean_patience=plan.mean_patience,
        mean_talk=plan.mean_talk,
    )
    people = asyncio.create_task(asyncio.to_thread(load, customers_file(), rules))
    console.print(f"starting PostgreSQL in {options.data_dir / 'pgdata'} …")
    try:
        async with database_url(settings) as dsn:
            await run_migrations(dsn)
            callback = await pbx.start()
            env = {
                "CALLCENTER_DATABASE_URL": dsn,
                "CALLCENTER_HOST": "127.0.0.1",
                "CALLCENTER_PORT": str(options.port),
                "CALLCENTER_API_TOKEN": admin_token,
                "CALLCENTER_GENERIC_WEBHOOK_SECRET": secret,
                "CALLCENTER_GENERIC_CALLBACK_URL": callback,
                "CALLCENTER_GENERIC_GATHER_UNKNOWN": "true",
                "CALLCENTER_LOG_LEVEL": "WARNING",
            }
            log = options.data_dir / "service.log"
            async with _service(env, log) as child, aiohttp.ClientSession() as http:
                await _import(dsn, rules, console)
                await _wait_ready(http, base, child, log)
                if stop.is_set():
                    return None
                api = Api(http, base, admin_token)
                traffic = await _start(options, api, pbx, await people, console)
                console.print(f"ready in {time.monotonic() - began:.1f} s; calls are flowing\n")
                await _drive(traffic, options.duration, stop, console)
                console.print("stopping: hanging up the calls still up; the agents wrap up …")
                await traffic.finish(api=api)
                result = traffic.summary(await traffic.facts(api))
                record = result.as_json() | {"ledger": traffic.ledger_json()}
    finally:
        await pbx.close()
        if not people.done():
            people.cancel()
    console.print(display.summary(result))
    console.print(f"the service's log: {log}")
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(record, indent=2, default=str))
    return result


@contextlib.asynccontextmanager
async def _service(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``callcenter serve`` as a child process, stopped (SIGTERM, then SIGKILL) on exit.

    Its own session, so the terminal's Ctrl-C reaches only the demo, which
    stops the service after it has read back the run's calls.
    """
    with log.open("ab") as out:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "callcenter",
            "serve",
            env=os.environ | env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), 15)
            except TimeoutError:
                child.kill()
                await child.wait()


async def _import(dsn: str, rules: CustomerRules, console: Console) -> None:
    """The sample customers, with the importer (idempotent: a kept folder is fine)."""
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        report = await import_file(pool, customers_file(), rules, workers=False)
    finally:
        await pool.close()
    console.print(f"{report.rows} sample customers loaded ({report.inserted} new)")


async def _wait_ready(
    http: aiohttp.ClientSession, base: str, child: asyncio.subprocess.Process, log: Path
) -> None:
    """Until the service says it is ready; its log's last lines if it died first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.returncode is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]  # noqa: ASYNC240
            raise DemoError("the service did not start: " + " / ".join(tail))
        try:
            async with http.get(base + "/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise DemoError(f"the service did not become ready in 60 s; see {log}")


async def _start(
    options: DemoOptions, api: Api, pbx: Pbx, people: Population, console: Console
) -> Traffic:
    run_id = new_run_id()
    floor = await set_up(api, options.plan, people.tiers, extra_agent=True, supervisor=True)
    base = api.base
    console.print(f"[b]Dashboard[/b]  {base}/dashboard")
    if floor.supervisor is not None:
        name, password = floor.supervisor
        console.print(f"           sign in as [b]{name}[/b], password [b]{password}[/b]")
    if floor.extra_agent is not None:
        name, token = floor.extra_agent
        console.print(f"[b]Agent page[/b] {base}/agent  (you are agent [b]{name}[/b])")
        console.print(f"           token [b]{token}[/b]")
    console.print(f"[b]API[/b]        admin token {api.headers['Authorization'][7:]}\n")
    traffic = Traffic(pbx, people, options.plan, floor, run_id=run_id)
    await traffic.start_agents()
    return traffic


async def _drive(
    traffic: Traffic, duration: float | None, stop: asyncio.Event, console: Console
) -> None:
    """Callers arrive until the duration is up or Ctrl-C; the live table meanwhile."""
    callers = asyncio.create_task(traffic.callers(stop))
    with Live(display.live(traffic), console=console, refresh_per_second=2) as screen:
        ends = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            left = None if ends is None else ends - time.monotonic()
            if left is not None and left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5 if left is None else min(0.5, left))
            screen.update(display.live(traffic))
    stop.set()
    await callers
