"""A real PostgreSQL server for dynamic database credentials (VaultDynamicSecret), started on a
free 127.0.0.1 port with a data directory of its own, and the `database` secrets engine of
OpenBao configured against it.

PostgreSQL refuses to run as root, and tests run as root here: the server then runs as the
`postgres` user (`runuser`), with its data directory in a temporary directory of its own
that user owns (pytest's temporary directories are private to root). Debian's binaries
(`/usr/lib/postgresql/<version>/bin`; `make test` installs them when missing) or any
`pg_ctl` on PATH.

The roles that OpenBao creates are named with the prefix `v-` (dynamic credentials); every
creation and revocation is also written to a table (`vaultsync_ledger`) by the role's own
statements, so that a test can count issued, revoked and live credentials on the database's
side, whoever revoked them (vaultsync, or OpenBao when a lease expired).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import psycopg

from e2e.harness import HarnessError, log
from e2e.harness.processes import HOST, Server, free_port

SUPERUSER = "postgres"
DATABASE = "app"
RUN_AS = "postgres"
LEDGER = "vaultsync_ledger"
STATIC_USER = "static_app"

CREATION = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
    'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";',
    f"INSERT INTO {LEDGER} (name, event) VALUES ('{{{{name}}}}', 'issued');",
]
REVOCATION = [
    f"INSERT INTO {LEDGER} (name, event) VALUES ('{{{{name}}}}', 'revoked');",
    'REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM "{{name}}";',
    'DROP ROLE IF EXISTS "{{name}}";',
]


def binaries() -> Path:
    """The directory of initdb, pg_ctl and postgres: Debian's newest, else pg_ctl's on PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path is None:
        raise HarnessError("no PostgreSQL binaries: apt-get install postgresql (make test does it)")
    return Path(on_path).parent


@dataclass(frozen=True)
class Counts:
    """Credentials of the database engine as PostgreSQL saw them."""

    issued: int
    revoked: int
    live: int  # roles named v-... that exist now


class Postgres(Server):
    """One PostgreSQL server; start() initialises and starts it, stop() stops it and removes
    its directory, kill() stops it at once (immediate mode) and start() brings it back."""

    def __init__(self) -> None:
        self.bin = binaries()
        self.port = free_port()
        self.password = os.urandom(12).hex()
        self.dir: Path | None = None
        self.running = False

    @property
    def data(self) -> Path:
        if self.dir is None:
            raise HarnessError("PostgreSQL has not been started")
        return self.dir / "data"

    def _as_owner(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
        command = [*prefix, *(str(a) for a in argv)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HarnessError(f"{Path(str(argv[0])).name} failed: {done.stderr[-2000:]}")
        return done

    def start(self) -> None:
        if self.running:
            return
        fresh = self.dir is None
        if fresh:
            self._init()
        assert self.dir is not None
        options = f"-p {self.port} -h {HOST} -k {self.dir} -c fsync=off -c max_connections=300"
        self._as_owner(
            self.bin / "pg_ctl", "-D", self.data, "-l", self.dir / "postgres.log",
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        self.running = True
        if fresh:
            self._schema()
        log(f"PostgreSQL ready at {HOST}:{self.port}")

    def _init(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vaultsync-postgres-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam(RUN_AS)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        password_file = self.dir / "password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        self._as_owner(
            self.bin / "initdb", "-D", self.data, "-U", SUPERUSER, "-A", "scram-sha-256",
            f"--pwfile={password_file}", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        password_file.unlink()

    def _schema(self) -> None:
        """The database, the ledger, a table to read and the static role's user."""
        with self.connect(dbname="postgres") as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        with self.connect() as conn:
            conn.execute(
                f"CREATE TABLE {LEDGER} (name text NOT NULL, event text NOT NULL, "
                "at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(f"GRANT INSERT ON {LEDGER} TO PUBLIC")
            conn.execute("CREATE TABLE greeting (word text)")
            conn.execute("INSERT INTO greeting VALUES ('hello')")
            conn.execute(f"CREATE ROLE {STATIC_USER} WITH LOGIN PASSWORD '{os.urandom(8).hex()}'")
            conn.execute(f"GRANT SELECT ON greeting TO {STATIC_USER}")

    def stop(self) -> None:
        """Stop (fast mode) and remove the data directory."""
        self.kill(mode="fast")
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def kill(self, mode: str = "immediate") -> None:
        """Stop the server now; start() brings it back with its data."""
        if not self.running:
            return
        self._as_owner(self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")
        self.running = False

    def connect(self, user: str = SUPERUSER, password: str | None = None, **kw: Any) -> Any:
        """A connection (autocommit) as user; the superuser's password by default."""
        params = {"dbname": DATABASE, **kw}
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=user,
            password=self.password if password is None else password,
            autocommit=True,
            connect_timeout=10,
            **params,
        )

    def can_log_in(self, user: str, password: str) -> bool:
        """Whether user/password logs in and reads the database (the role's grants)."""
        try:
            with self.connect(user, password) as conn:
                return conn.execute("SELECT word FROM greeting").fetchone() == ("hello",)
        except psycopg.Error:
            return False

    def counts(self) -> Counts:
        """One statement, so one snapshot: a revocation (its ledger row and its DROP ROLE, one
        transaction) is seen whole or not at all, never its DROP without its row."""
        with self.connect() as conn:
            row = conn.execute(
                f"SELECT (SELECT count(*) FROM {LEDGER} WHERE event = 'issued'), "
                f"(SELECT count(*) FROM {LEDGER} WHERE event = 'revoked'), "
                "(SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%')"
            ).fetchone()
        return Counts(int(row[0]), int(row[1]), int(row[2]))

    def roles(self) -> set[str]:
        """The names of the dynamic roles that exist now."""
        with self.connect() as conn:
            rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'")
            return {str(r[0]) for r in rows}

    def configure_vault(
        self,
        vault: hvac.Client,
        *,
        mount: str = "database",
        ttl: str = "30s",
        max_ttl: str = "90s",
        rotation_period: str = "20s",
    ) -> None:
        """OpenBao's database engine at mount, against this server: a connection `app`, a
        dynamic role `app` (ttl, max_ttl) and a static role `static` for STATIC_USER whose
        password OpenBao rotates every rotation_period; more dynamic roles with add_role."""
        if f"{mount}/" not in vault.sys.list_mounted_secrets_engines()["data"]:
            vault.sys.enable_secrets_engine("database", path=mount)
        vault.write(
            f"{mount}/config/app",
            plugin_name="postgresql-database-plugin",
            connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{HOST}:{self.port}/"
            f"{DATABASE}?sslmode=disable",
            username=SUPERUSER,
            password=self.password,
            allowed_roles=["*"],
            verify_connection=True,
        )
        self.add_role(vault, "app", mount=mount, ttl=ttl, max_ttl=max_ttl)
        vault.write(
            f"{mount}/static-roles/static",
            db_name="app",
            username=STATIC_USER,
            rotation_period=rotation_period,
        )

    @staticmethod
    def add_role(
        vault: hvac.Client, name: str, *, mount: str = "database", ttl: str, max_ttl: str
    ) -> None:
        """A dynamic role: a new PostgreSQL role (v-...) per read, recorded in the ledger."""
        vault.write(
            f"{mount}/roles/{name}",
            db_name="app",
            creation_statements=CREATION,
            revocation_statements=REVOCATION,
            default_ttl=ttl,
            max_ttl=max_ttl,
        )

    @staticmethod
    def leases(vault: hvac.Client, mount: str = "database") -> set[str]:
        """The lease ids Vault holds for the dynamic roles of mount (as an admin sees them)."""
        found: set[str] = set()
        try:
            roles = vault.sys.list_leases(f"{mount}/creds/")["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return found
        for role in roles:
            prefix = f"{mount}/creds/{role}"
            try:
                keys = vault.sys.list_leases(prefix)["data"]["keys"]
            except hvac.exceptions.InvalidPath:
                continue
            found.update(f"{prefix}{key}" for key in keys)
        return found
