"""Service fixtures of the sync tests: our own nats-server(s), PostgreSQL and batch receiver.

Each starts on 127.0.0.1 on a free port in a tmp dir, waits until ready, and is stopped by PID.
A NATS on 4222 or a PostgreSQL on 5432 that may run on the machine is never used.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from natsservers import Nats, running_nats, stop  # noqa: E402,F401
from support.services import free_port, wait_for_port

from sync.identities import FleetIdentities

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RECEIVER = Path(__file__).with_name("sync_receiver.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Nats]:
    """One node with the centre's backbone (1 replica), consumers for stores s1 and s2."""
    with running_nats(tmp_path / "nats", 1) as nats:
        yield nats


@pytest.fixture
def bare_nats_server(tmp_path: Path) -> Iterator[Nats]:
    """One node on which the centre has created nothing."""
    with running_nats(tmp_path / "nats", 1, backbone=False) as nats:
        yield nats


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[Nats]:
    """Three clustered nodes with the backbone at 3 replicas."""
    with running_nats(tmp_path / "cluster", 3) as nats:
        yield nats


@pytest.fixture
def fleet(tmp_path: Path) -> FleetIdentities:
    """A fleet directory with identities for stores s1 and s2 (`edge central identities`)."""
    identities = FleetIdentities(tmp_path / "fleet")
    identities.add(["s1", "s2"])
    return identities


@pytest.fixture
def secured_nats(tmp_path: Path, fleet: FleetIdentities) -> Iterator[Nats]:
    """One node that admits only the fleet's identities, with the backbone."""
    with running_nats(tmp_path / "secured", 1, fleet=fleet) as nats:
        yield nats


# -- PostgreSQL ------------------------------------------------------------------------------
def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("no 'postgres' system user: apt-get install postgresql-15")


def _as_postgres(argv: list[str]) -> list[str]:
    """As the postgres user when we are root. setpriv execs (no fork), so the PID we hold is
    the postmaster's own and our signals reach it."""
    if os.geteuid() != 0:
        return argv  # already unprivileged: run as ourselves
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to run PostgreSQL as the postgres user")
    return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


@contextmanager
def running_postgres() -> Iterator[str]:
    """A PostgreSQL 15 on 127.0.0.1 in a temporary directory; yields the DSN of ``postgres``."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 binaries not found in {PG_BIN}: install postgresql-15")
    user = _postgres_user()
    tmp = Path(tempfile.mkdtemp(prefix="sync-pg-"))
    data, sockets = tmp / "data", tmp / "sock"
    sockets.mkdir()
    os.chmod(tmp, 0o755)
    if os.geteuid() == 0:
        for path in (tmp, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8"]),
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    log = open(tmp / "postgres.log", "ab")
    process = subprocess.Popen(
        _as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                      "-k", str(sockets),
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                      "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    try:
        wait_for_port(port, proc=process)
        import psycopg

        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg.connect(dsn).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield dsn
    finally:
        stop(process, signal.SIGINT)  # fast shutdown
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 for the session; yields the DSN of its ``postgres`` database."""
    with running_postgres() as dsn:
        yield dsn


@pytest.fixture
def postgres(postgres_server: str) -> Iterator[str]:
    """A fresh database per test; yields its DSN."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


# -- the Segment-compatible receiver ---------------------------------------------------------
@dataclass
class ReceiverHandle:
    url: str
    db: Path
    write_key: str
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_stats").json())

    def control(self, **values: object) -> None:
        httpx.post(f"{self.url}/_control", json=values).raise_for_status()

    def received_ids(self) -> list[str]:
        import sqlite3

        with sqlite3.connect(self.db) as conn:
            return [r[0] for r in conn.execute("SELECT message_id FROM receipts")]


def start_receiver(directory: Path, write_key: str = "test-key", cpu: int | None = None) -> ReceiverHandle:
    port = free_port()
    db = directory / f"receiver-{port}.db"
    argv = [sys.executable, str(RECEIVER), "--port", str(port), "--db", str(db),
            "--write-key", write_key]  # fmt: skip
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    with open(directory / f"receiver-{port}.log", "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
    wait_for_port(port, proc=process)
    return ReceiverHandle(f"http://127.0.0.1:{port}", db, write_key, process)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverHandle]:
    handle = start_receiver(tmp_path)
    try:
        yield handle
    finally:
        stop(handle.process)
