"""The ``callcenter`` command line: serve, demo, migrate, import, sample-data.

Each command builds ``Settings`` from the environment and runs one asyncio
program; nothing is kept between commands but the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import typing
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from aiohttp import web
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from callcenter.config import Settings, explain_settings_error

T = TypeVar("T")
cli = typer.Typer(
    help="callcenter: a contact-center backend that treats different callers differently.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _settings() -> Settings:
    """Settings from the environment; a bad one is a line naming its variable, exit 2."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        for line in explain_settings_error(exc):
            console.print("bad setting: " + line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is installed on Linux
        return asyncio.run(coro)


def _logging(settings: Settings) -> None:
    from callcenter.http.logs import MaskingFilter

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskingFilter())


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (CALLCENTER_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="HTTP port (CALLCENTER_PORT).")
    ] = None,
) -> None:
    """Run the service (embedded PostgreSQL unless CALLCENTER_DATABASE_URL is set)."""
    settings = _settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    _logging(settings)
    from callcenter.agent_assist.knowledge.bank import read_bank
    from callcenter.errors import BankFileError, CallCenterError

    try:
        if settings.questions_file is not None:
            # An unreadable file stops here, before the database starts; the entries'
            # problems are reported at load time, with those that need the stored bank.
            read_bank(settings.questions_file, keep_problems=True)
        # The port is taken first: a busy one is a line, before the database starts.
        sockets = _listen(settings.host, settings.port)
        _run(_serve(settings, sockets))
    except BankFileError as exc:  # the bank file at start: every file:line, then stop
        console.print("[red]the question bank file cannot be loaded; not starting:[/red]")
        for error in exc.errors:
            console.print(error, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except CallCenterError as exc:
        console.print(f"[red]{exc.title}:[/red] {exc.detail}; not starting")
        raise typer.Exit(2) from None


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bound, listening sockets for ``host:port`` (every address the name has).

    Taken before anything else starts, so that a port in use or an address this
    machine does not have is one line and exit code 2, not a started database,
    its logs and a traceback on the way down.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        _cannot_listen(host, port, exc.strerror or str(exc))
    except UnicodeError as exc:  # a name no resolver takes
        _cannot_listen(host, port, str(exc))
    addresses = list(dict.fromkeys((i[0], i[4]) for i in infos))
    if port == 0:  # an ephemeral port: one address, or each would get another port
        addresses = addresses[:1]
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        _cannot_listen(host, port, exc.strerror or str(exc))
    return sockets


def _cannot_listen(host: str, port: int, reason: str) -> typing.NoReturn:
    console.print(
        f"cannot listen on {host}:{port}: {reason} "
        "(CALLCENTER_HOST / CALLCENTER_PORT, or --host / --port); not starting",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(2)


async def _serve(settings: Settings, sockets: list[socket.socket]) -> None:
    from callcenter.app import create_app
    from callcenter.http.logs import AccessLogger

    runner = web.AppRunner(
        create_app(settings), handle_signals=False, access_log_class=AccessLogger
    )
    try:
        await runner.setup()  # starts the database, migrates, opens the pool, loads the bank
    except BaseException:
        await runner.cleanup()  # close what started before the failure (the database)
        raise
    # Ctrl-C is ours from before the first request: a signal between the site
    # answering /readyz and the handlers below was a KeyboardInterrupt, exit 130.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    port = sockets[0].getsockname()[1]
    # Everything loaded so far (modules, schemas, the question bank) lives as
    # long as the process: out of the collector's sight, its full passes walk
    # only what calls create. Unfrozen, a full pass over the start-up heap
    # stalled the event loop for 20-55 ms, a routing latency spike each time.
    # (Garbage of the start-up is collected first, not frozen with the rest.)
    gc.collect()
    gc.freeze()
    console.print(f"callcenter is serving on http://{settings.host}:{port} (Ctrl-C stops)")
    try:
        await stop.wait()
    finally:
        console.print("stopping: closing connections and the database")
        await runner.cleanup()


@cli.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Run this many seconds, then print the summary.")
    ] = None,
    rate: Annotated[float, typer.Option(help="Calls a second (a Poisson stream).")] = 1.0,
    agents: Annotated[int, typer.Option(help="Simulated agents.")] = 14,
    policy: Annotated[
        str, typer.Option(help="The queues' policy: value, strict or fifo.")
    ] = "value",
    seed: Annotated[int, typer.Option(help="Replays the same callers and agents.")] = 1,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The service's port.")] = 8080,
    data_dir: Annotated[
        Path, typer.Option(help="The demo's own folder (its database and the service log).")
    ] = Path("./var/demo"),
    keep: Annotated[
        bool, typer.Option(help="Keep the folder's database from the last run.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary to this file.")
    ] = None,
) -> None:
    """A working contact center: the service, sample customers, callers and agents."""
    from callcenter.simulation.demo import DemoError, DemoOptions, check_options, run
    from callcenter.simulation.traffic import Plan

    if policy not in ("value", "strict", "fifo"):
        console.print(f"--policy must be value, strict or fifo, not {policy!r}")
        raise typer.Exit(2)
    options = DemoOptions(
        plan=Plan(rate=rate, agents=agents, policy=policy, seed=seed),
        duration=duration,
        port=port,
        data_dir=data_dir,
        keep=keep,
        json_out=json_out,
    )
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    out = Console()
    try:
        check_options(options)
        _run(run(options, out))
    except DemoError as exc:
        console.print(f"[red]not starting the demo:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None


@cli.command()
def migrate() -> None:
    """Apply pending database migrations and exit."""
    settings = _settings()
    _logging(settings)

    async def run() -> int:
        from callcenter.db.lifecycle import database_url, run_migrations

        async with database_url(settings) as dsn:
            return await run_migrations(dsn)

    from callcenter.errors import CallCenterError

    try:
        count = _run(run())
    except CallCenterError as exc:  # a database migrated by newer code
        console.print(f"[red]{exc.title}:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    console.print(f"{count} migration(s) applied; the database is current")


@cli.command()
def schema(
    output: Annotated[
        Path | None,
        typer.Option(help="Write here instead of the package's callcenter/db/schema.sql."),
    ] = None,
) -> None:
    """Migrate a fresh, temporary embedded database and write its schema (pg_dump)."""
    import tempfile

    from callcenter.db.schema import SNAPSHOT, dump_schema

    async def run(folder: Path) -> str:
        from callcenter.db.embedded import start_embedded
        from callcenter.db.lifecycle import run_migrations

        server = await asyncio.to_thread(start_embedded, folder / "pgdata")
        try:
            await run_migrations(server.url())
            return await dump_schema(server.url())
        finally:
            await asyncio.to_thread(server.stop)

    with tempfile.TemporaryDirectory(prefix="callcenter-schema-") as folder:
        text = _run(run(Path(folder)))
    target = output or SNAPSHOT
    target.write_text(text)
    console.print(f"schema written to {target}")


@cli.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON lines.")],
    rejects: Annotated[
        Path | None, typer.Option(help="Write every rejected row (line, reason) to this CSV.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 5000,
) -> None:
    """Upsert customers from a CRM export; idempotent; reports rejected rows."""
    settings = _settings()
    _logging(settings)
    from callcenter.customers.importer import import_file
    from callcenter.customers.store import CustomerRules
    from callcenter.db.lifecycle import open_database
    from callcenter.errors import CallCenterError

    async def run() -> Any:
        async with open_database(settings) as pool:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                return await import_file(
                    pool,
                    file,
                    CustomerRules.from_settings(settings),
                    batch_size=batch_size,
                    on_progress=advance,
                )

    try:
        report = _run(run())
    except CallCenterError as exc:
        console.print(f"[red]{file}: {exc.detail}[/red]")
        raise typer.Exit(2) from None
    out = Console()
    out.print(
        f"{report.rows} rows: {report.inserted} new, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.rejected)} rejected; "
        f"{report.phones_linked} phone links added"
    )
    if report.rejected:
        table = Table("line", "reason", title="Rejected rows")
        for r in report.rejected[:20]:
            table.add_row(str(r.line), r.reason)
        out.print(table)
        if len(report.rejected) > 20 and rejects is None:
            out.print(f"... and {len(report.rejected) - 20} more; --rejects FILE writes them all")
    if rejects is not None:
        import csv

        with rejects.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["line", "reason"])
            writer.writerows((r.line, r.reason) for r in report.rejected)
        out.print(f"rejected rows written to {rejects}")


@cli.command("sample-data")
def sample_data(
    out: Annotated[Path, typer.Argument(help="Where to write (.csv or .jsonl, either with .gz).")],
    count: Annotated[int, typer.Option(min=1)] = 10_000,
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Write realistic, skewed sample customers (the demo and benchmarks use them)."""
    from callcenter.customers.importer import file_format
    from callcenter.customers.sample_data import generate, write_csv, write_jsonl
    from callcenter.errors import CallCenterError

    # The importer's own rule picks the format, so whatever is written here imports;
    # a name it cannot read is refused before anything is written.
    try:
        fmt = file_format(out)
    except CallCenterError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from None
    writer = write_jsonl if fmt == "jsonl" else write_csv
    written = writer(out, generate(count, seed=seed))
    Console().print(f"{written} customers written to {out}")


agent_cli = typer.Typer(help="Agents and their tokens.", no_args_is_help=True)
cli.add_typer(agent_cli, name="agent")


@agent_cli.command("add")
def agent_add(
    name: Annotated[str, typer.Argument(help="Unique agent name, e.g. ada.")],
    queue: Annotated[
        list[str], typer.Option("--queue", "-q", help="A queue the agent serves (repeat).")
    ],
    overflow: Annotated[
        list[str] | None,
        typer.Option(help="A queue the agent takes overflow calls of (repeat)."),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="Where the PBX reaches the agent: client:NAME, sip:URI, +E164 or TECH/RESOURCE."
        ),
    ] = None,
) -> None:
    """Create an agent and print its token (shown only this once)."""
    from callcenter.customers.value import ordered_tiers
    from callcenter.db.lifecycle import open_database
    from callcenter.errors import CallCenterError
    from callcenter.queue import agents
    from callcenter.queue.directory import QueueDirectory
    from callcenter.queue.models import AgentIn

    settings = _settings()
    try:
        data = AgentIn(name=name, queues=queue, overflow_queues=overflow or [], endpoint=endpoint)
    except ValidationError as exc:
        console.print(f"[red]bad agent:[/red] {exc}")
        raise typer.Exit(2) from None

    async def run() -> Any:
        async with open_database(settings) as pool, pool.acquire() as conn:
            directory = QueueDirectory(ordered_tiers(settings.tier_thresholds))
            return await agents.create_agent(
                conn, data, directory, token_days=settings.agent_token_days
            )

    try:
        created = _run(run())
    except CallCenterError as exc:
        console.print(f"[red]{exc.title}:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    Console().print(f"agent {created.agent.id} {created.agent.name}")
    Console().print(f"token {created.token}")


@agent_cli.command("list")
def agent_list() -> None:
    """Every agent with its queues and state."""
    from callcenter.db.lifecycle import open_database
    from callcenter.queue import agents

    settings = _settings()

    async def run() -> Any:
        async with open_database(settings) as pool, pool.acquire() as conn:
            return await agents.list_agents(conn)

    table = Table("id", "name", "queues", "overflow", "state", "endpoint")
    for a in _run(run()):
        table.add_row(
            str(a.id),
            a.name,
            ",".join(a.queues),
            ",".join(a.overflow_queues),
            a.state.value,
            a.endpoint or "",
        )
    Console().print(table)


def _db_command(settings: Settings, work: Any) -> Any:
    """Run ``work(conn)`` on the configured database; a domain error is printed, exit 2."""
    from callcenter.db.lifecycle import open_database
    from callcenter.errors import CallCenterError

    async def run() -> Any:
        async with open_database(settings) as pool, pool.acquire() as conn:
            return await work(conn)

    try:
        return _run(run())
    except CallCenterError as exc:
        console.print(f"[red]{exc.title}:[/red] {exc.detail}")
        raise typer.Exit(2) from None


@agent_cli.command("remove")
def agent_remove(
    agent: Annotated[str, typer.Argument(help="The agent's name or id.")],
) -> None:
    """Remove an agent: its token stops working, it goes offline, its calls keep its name."""
    from callcenter.queue import agents

    settings = _settings()

    async def work(conn: Any) -> Any:
        return await agents.remove(conn, await agents.find_id(conn, agent))

    removed = _db_command(settings, work)
    Console().print(f"agent {removed.id} {removed.name} removed")


agent_token_cli = typer.Typer(help="An agent's token.", no_args_is_help=True)
agent_cli.add_typer(agent_token_cli, name="token")


@agent_token_cli.command("reset")
def agent_token_reset(
    agent: Annotated[str, typer.Argument(help="The agent's name or id.")],
) -> None:
    """Give the agent a new token (printed once); the old one stops working at once."""
    from callcenter.queue import agents

    settings = _settings()

    async def work(conn: Any) -> Any:
        agent_id = await agents.find_id(conn, agent)
        return await agents.reset_token(conn, agent_id, token_days=settings.agent_token_days)

    made = _db_command(settings, work)
    Console().print(f"agent {made.agent.id} {made.agent.name}")
    Console().print(f"token {made.token}")
    Console().print(f"expires {made.agent.token_expires_at:%Y-%m-%d %H:%M %Z}")


user_cli = typer.Typer(help="Supervisors and admins who sign in.", no_args_is_help=True)
cli.add_typer(user_cli, name="user")


@user_cli.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Sign-in name, e.g. ann.")],
    role: Annotated[str, typer.Option(help="supervisor or admin.")] = "supervisor",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of generating one.")
    ] = False,
) -> None:
    """Add a supervisor or an admin; prints a generated password once (or reads one)."""
    import sys

    from callcenter.people import store
    from callcenter.people.models import PersonIn

    settings = _settings()
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        data = PersonIn(name=name, role=role, password=password)
    except ValidationError as exc:
        console.print(f"[red]bad user:[/red] {exc}")
        raise typer.Exit(2) from None
    made = _db_command(settings, lambda conn: store.create_person(conn, data))
    Console().print(f"user {made.person.id} {made.person.name} ({made.person.role})")
    if made.password is not None:
        Console().print(f"password {made.password}")


@user_cli.command("list")
def user_list() -> None:
    """Supervisors and admins."""
    from callcenter.people import store

    people = _db_command(_settings(), store.list_people)
    table = Table("id", "name", "role", "since")
    for p in people:
        table.add_row(str(p.id), p.name, p.role, f"{p.created_at:%Y-%m-%d}")
    Console().print(table)


@user_cli.command("remove")
def user_remove(name: Annotated[str, typer.Argument(help="The sign-in name.")]) -> None:
    """Remove a person: they cannot sign in, and their sessions end now."""
    from callcenter.people import store

    async def work(conn: Any) -> Any:
        return await store.remove_person(conn, await store.find_id(conn, name))

    gone = _db_command(_settings(), work)
    Console().print(f"user {gone.id} {gone.name} removed")


integration_cli = typer.Typer(
    help="Named tokens for integrations such as CRM sync.", no_args_is_help=True
)
cli.add_typer(integration_cli, name="integration")


@integration_cli.command("add")
def integration_add(
    label: Annotated[str, typer.Argument(help="What uses the token, e.g. crm-sync.")],
    role: Annotated[str, typer.Option(help="supervisor or admin.")] = "admin",
    days: Annotated[int, typer.Option(help="Days until it expires.")] = 365,
) -> None:
    """Make an integration token (printed once)."""
    from callcenter.people import store
    from callcenter.people.models import IntegrationIn

    try:
        data = IntegrationIn(label=label, role=role, days=days)
    except ValidationError as exc:
        console.print(f"[red]bad integration:[/red] {exc}")
        raise typer.Exit(2) from None
    made = _db_command(_settings(), lambda conn: store.create_integration(conn, data))
    i = made.integration
    Console().print(f"integration {i.id} {i.label} ({i.role}), expires {i.expires_at:%Y-%m-%d}")
    Console().print(f"token {made.token}")


@integration_cli.command("revoke")
def integration_revoke(
    integration_id: Annotated[int, typer.Argument(help="The id `integration add` printed.")],
) -> None:
    """Revoke an integration token: it stops working at once."""
    from callcenter.people import store

    _db_command(_settings(), lambda conn: store.revoke_integration(conn, integration_id))
    Console().print(f"integration {integration_id} revoked")


assist_cli = typer.Typer(
    help="The learning-question bank and treatment rules.", no_args_is_help=True
)
cli.add_typer(assist_cli, name="assist")


@assist_cli.command("load")
def assist_load(
    file: Annotated[Path, typer.Argument(help="A bank file (YAML): questions: and treatments:.")],
) -> None:
    """Load a question bank file: print what changed, or every file:line error (exit 2)."""
    from callcenter.agent_assist.knowledge.bank import load_bank, read_bank
    from callcenter.customers.value import ordered_tiers
    from callcenter.db.lifecycle import open_database
    from callcenter.errors import BankFileError, CallCenterError

    settings = _settings()
    out = Console()

    def errors(found: list[str]) -> typer.Exit:
        for error in found:
            out.print(error, markup=False, highlight=False, soft_wrap=True)
        console.print(f"[red]{len(found)} problem(s); nothing was loaded[/red]")
        return typer.Exit(2)

    try:
        # An unreadable file is reported before the database starts; every other
        # problem comes back from load_bank, all of them in one list.
        bank_file = read_bank(file, keep_problems=True)
    except BankFileError as exc:
        raise errors(exc.errors) from None

    async def run() -> Any:
        async with open_database(settings) as pool, pool.acquire() as conn:
            tiers = ordered_tiers(settings.tier_thresholds)
            return await load_bank(conn, bank_file, tiers=tiers)

    try:
        change = _run(run())
    except BankFileError as exc:
        raise errors(exc.errors) from None
    except CallCenterError as exc:
        console.print(f"[red]{exc.title}:[/red] {exc.detail}")
        raise typer.Exit(2) from None
    entries = len(bank_file.questions) + len(bank_file.treatments)
    out.print(
        f"{file}: {entries} entries: {len(change.created)} created, {len(change.updated)} "
        f"updated, {len(change.unchanged)} unchanged, {len(change.deactivated)} deactivated, "
        f"{len(change.kept_api)} managed through the API (left alone)"
    )
    for label, keys in (
        ("created", change.created),
        ("updated", change.updated),
        ("deactivated", change.deactivated),
        ("left alone (API)", change.kept_api),
    ):
        for key in keys:
            out.print(f"  {label}: {key}", markup=False, highlight=False)


def main() -> None:
    cli()


retention_cli = typer.Typer(
    help="How long call notes and text answers are kept.", no_args_is_help=True
)
cli.add_typer(retention_cli, name="retention")


@retention_cli.command("run")
def retention_run(
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Keep this many days (default CALLCENTER_RETENTION_DAYS)."),
    ] = None,
) -> None:
    """Clear call notes and text answers older than the retention period now (rows are kept)."""
    from callcenter.customers import privacy

    settings = _settings()
    keep = days if days is not None else settings.retention_days
    done = _db_command(settings, lambda conn: privacy.apply_retention(conn, keep, channel="cli"))
    Console().print(
        f"retention ({done.days} days): {done.notes} notes and {done.text_answers} text answers "
        f"cleared, {done.customers} customers"
    )


simulate_cli = typer.Typer(
    help="What-if: the queue policies side by side on the same calls, and staffing.",
    invoke_without_command=True,
)
cli.add_typer(simulate_cli, name="simulate")


def _what_if_refused(exc: Exception) -> typer.Exit:
    """A refused what-if request: its one line (naming the option), exit 2."""
    console.print(f"[red]cannot simulate:[/red] {exc}", soft_wrap=True, highlight=False)
    return typer.Exit(2)


@simulate_cli.callback()
def simulate(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(help="Calls an hour (a Poisson stream).")] = 1250.0,
    aht: Annotated[float, typer.Option(help="Average handle time, seconds.")] = 240.0,
    agents: Annotated[
        int | None,
        typer.Option(help="Agents (default: Erlang C's count for --target)."),
    ] = None,
    patience: Annotated[
        float,
        typer.Option(help="Callers' mean patience, seconds (exponential); 'inf': never hang up."),
    ] = 90.0,
    hours: Annotated[float, typer.Option(help="Simulated hours of arrivals.")] = 8.0,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="fifo, strict, value or all (repeatable; default all)."),
    ] = None,
    credits: Annotated[
        str | None,
        typer.Option(help="The value policy's credits, e.g. platinum=120,gold=60,silver=20."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Service-level target PERCENT/SECONDS (default 80/20; with --queue, "
            "80/the queue's own seconds)."
        ),
    ] = None,
    handle_cv: Annotated[
        float | None,
        typer.Option(help="Lognormal handle times with this spread (default exponential)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="The same seed replays the same calls.")] = 1,
    runs: Annotated[int, typer.Option(help="Runs with seeds seed.. (95 % intervals).")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    plot_file: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw waits by tier and service level over time (PNG)."),
    ] = None,
    from_history: Annotated[
        bool,
        typer.Option(help="Replay the service's own finished calls instead of synthetic ones."),
    ] = False,
    since: Annotated[
        str, typer.Option(help="With --from-history: the window, e.g. 7d, 12h.")
    ] = "7d",
    queue: Annotated[
        str | None, typer.Option(help="With --from-history: only this queue's calls.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="With --from-history: the data folder (e.g. var/demo for the demo's)."),
    ] = None,
    callback_after: Annotated[
        float | None,
        typer.Option(
            help="Callbacks on: offered to a caller whose estimated wait at arrival is at "
            "least this many seconds (off by default)."
        ),
    ] = None,
    callback_take: Annotated[
        float | None, typer.Option(help="Share of offered callers who take it (default 0.5).")
    ] = None,
    callback_answer: Annotated[
        float | None, typer.Option(help="Share of rings the caller answers (default 0.8).")
    ] = None,
    callback_attempts: Annotated[
        int | None, typer.Option(help="Rings before a callback fails (default 3).")
    ] = None,
    callback_retry: Annotated[
        float | None, typer.Option(help="Seconds between unanswered rings (default 120).")
    ] = None,
    callback_ring: Annotated[
        float | None,
        typer.Option(help="Seconds an unanswered ring holds the agent (default 30)."),
    ] = None,
    callback_tiers: Annotated[
        str | None,
        typer.Option(help="Offer it only to these tiers, e.g. platinum,gold (default all)."),
    ] = None,
    compare_callbacks: Annotated[
        bool,
        typer.Option(help="Each policy without and with callbacks, side by side, same calls."),
    ] = False,
) -> None:
    """Serve the same simulated calls under fifo, strict and value, side by side."""
    if ctx.invoked_subcommand is not None:
        return
    import json

    from callcenter.simulation.whatif import WhatIfError
    from callcenter.simulation.whatif_report import (
        bound_line,
        callback_effect_table,
        callback_line,
        comparison_table,
    )
    from callcenter.simulation.whatif_run import (
        CallbackOptions,
        SimulateOptions,
        erlang_reference,
        plan,
        simulate_json,
    )
    from callcenter.simulation.whatif_run import simulate as run_simulation

    policies = policy or ["all"]
    callbacks = CallbackOptions(
        after=callback_after,
        take=callback_take,
        answer=callback_answer,
        attempts=callback_attempts,
        retry=callback_retry,
        ring=callback_ring,
        tiers=callback_tiers,
        compare=compare_callbacks,
    )
    if from_history:
        comparison, loads, outcomes, report, title, reference = _replay(
            since, queue, data_dir, agents, policies, credits, target, seed, runs, callbacks
        )
    else:
        options = SimulateOptions(
            rate_per_hour=rate,
            aht=aht,
            agents=agents,
            patience=patience,
            hours=hours,
            policies=policies,
            credits=credits,
            target=target or "80/20",
            seed=seed,
            runs=runs,
            handle_cv=handle_cv,
            callbacks=callbacks,
        )
        try:
            checked = plan(options)
        except WhatIfError as exc:
            raise _what_if_refused(exc) from None
        for note in checked.notes:
            console.print(f"[yellow]{note}[/yellow]", soft_wrap=True, highlight=False)
        try:
            comparison, loads, outcomes = run_simulation(checked)
        except WhatIfError as exc:
            raise _what_if_refused(exc) from None
        report = simulate_json(checked, comparison)
        title = (
            f"{rate:g} calls/h for {hours:g} h, AHT {aht:g} s, {checked.agents} agents, "
            f"patience {checked.traffic.patience:g} s, target {checked.target}"
        )
        ref = erlang_reference(checked)
        asa = "-" if ref["asa"] is None else f"{ref['asa']:.1f} s"
        reference = (
            f"Erlang C (fifo, nobody hangs up): {ref['load_erlangs']:.1f} Erlangs, "
            f"P(wait) {ref['wait_probability']:.1%}, ASA {asa}, SL {ref['service_level']:.1%}"
        )
    title += f", {runs} run(s) from seed {seed}"
    if plot_file is not None:
        from callcenter.simulation.plot import plot

        plot(plot_file, loads[0], outcomes[0], comparison.target, title + " (first run)")
        console.print(f"plot written to {plot_file}", highlight=False)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    out = Console()
    if comparison.without_callbacks is not None:
        out.print(callback_effect_table(comparison, title))
    else:
        out.print(comparison_table(comparison, title))
    said = callback_line(comparison)
    if said is not None:
        out.print(said, highlight=False)
    if reference:
        out.print(reference, highlight=False)
    for policy_report in comparison.reports:
        out.print(bound_line(policy_report), highlight=False)


def _replay(
    since: str,
    queue: str | None,
    data_dir: Path | None,
    agents: int | None,
    policies: list[str],
    credits: str | None,
    target: str | None,
    seed: int,
    runs: int,
    callbacks: Any = None,
) -> tuple[Any, Any, Any, dict[str, Any], str, str]:
    """The service's own finished calls of the window, replayed under each policy."""
    from callcenter.customers.value import ordered_tiers
    from callcenter.db.lifecycle import open_database
    from callcenter.simulation.history import read_history, read_queue
    from callcenter.simulation.whatif import WhatIfError
    from callcenter.simulation.whatif_run import (
        history_json,
        history_plan,
        replay_history,
        since_option,
    )

    settings = _settings()
    if data_dir is not None:
        settings.data_dir = data_dir
    try:
        window = since_option(since)
    except WhatIfError as exc:
        raise _what_if_refused(exc) from None

    async def read() -> Any:
        async with open_database(settings) as pool:
            found = await read_queue(pool, queue) if queue else None
            return await read_history(pool, window, queue), found

    calls, configured = _run(read())
    if queue and configured is None:
        raise _what_if_refused(WhatIfError(f"--queue: there is no queue named {queue!r}"))
    if configured is not None and target is None:
        target = f"80/{configured.service_level_seconds:g}"
    try:
        hp = history_plan(
            calls,
            ordered_tiers(settings.tier_thresholds),
            since=since,
            queue=queue,
            agents=agents,
            policy_names=policies,
            credits=credits,
            target=target or "80/20",
            seed=seed,
            runs=runs,
            queue_credits=configured.credits if configured is not None else None,
            callbacks=callbacks,
        )
    except WhatIfError as exc:
        raise _what_if_refused(exc) from None
    for note in hp.notes:
        console.print(f"[yellow]{note}[/yellow]", soft_wrap=True, highlight=False)
    comparison, loads, outcomes = replay_history(hp)
    where = f" in {queue}" if queue else ""
    title = (
        f"replay of the last {since}{where}: {len(calls)} calls, {hp.agents} agents, "
        f"target {hp.target}"
    )
    return comparison, loads, outcomes, history_json(hp, comparison), title, ""


@simulate_cli.command("staffing")
def simulate_staffing(
    rate: Annotated[float, typer.Option(help="Calls an hour.")],
    aht: Annotated[float, typer.Option(help="Average handle time, seconds.")],
    target: Annotated[str, typer.Option(help="Service-level target PERCENT/SECONDS.")] = "80/20",
    patience: Annotated[
        float, typer.Option(help="Callers' mean patience in the simulation, seconds.")
    ] = 90.0,
    hours: Annotated[float, typer.Option(help="Simulated hours per run.")] = 8.0,
    seed: Annotated[int, typer.Option(help="The same seed replays the same calls.")] = 1,
    runs: Annotated[int, typer.Option(help="Runs averaged per agent count.")] = 1,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """Agents needed for a service-level target: Erlang C and the simulation, side by side."""
    import json

    from callcenter.simulation.whatif import WhatIfError
    from callcenter.simulation.whatif_report import staffing_table
    from callcenter.simulation.whatif_run import staffing

    try:
        answer = staffing(rate, aht, target, patience, hours, seed, runs)
    except WhatIfError as exc:
        raise _what_if_refused(exc) from None
    if json_out:
        typer.echo(json.dumps(answer.as_json(), indent=2))
        return
    out = Console()
    title = (
        f"{rate:g} calls/h, AHT {aht:g} s, target {answer.target}; "
        f"simulation: fifo, patience {patience:g} s, {hours:g} h x {runs} run(s)"
    )
    out.print(staffing_table(answer.target, answer.erlang_rows, answer.simulated_rows, title))
    out.print(
        f"agents needed: Erlang C {answer.erlang_agents}, "
        f"simulated with abandonment {answer.simulated_agents}",
        highlight=False,
    )
