"""Engine, sessions and migrations: a SQLite file in WAL mode by default, PostgreSQL by URL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, FromClause, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
READ_ONLY = "bitzero_read_only"
BUSY_TIMEOUT_S = 30  # how long a SQLite writer waits for the write lock before "database is locked"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        connection.isolation_level = None  # SQLAlchemy, not the driver, opens transactions (see below)
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only power loss can drop the last commit).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, not left in free pages (erasure must hold).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        # Writers take the lock up front: a deferred transaction that reads and then writes can
        # fail with SQLITE_BUSY under concurrent requests, whatever the busy timeout. Readers
        # (see session_factory) run beside each other and beside the writer, as WAL allows.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def upsert(session: Session, table: FromClause) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT into ``table``, which has ``on_conflict_do_*`` (PostgreSQL and SQLite both do)."""
    if not isinstance(table, Table):  # a mapped class's __table__, typed as FromClause
        raise TypeError(f"upsert needs a Table, got {type(table).__name__}")
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_missing(session: Session, table: FromClause, values: dict) -> None:
    """INSERT that does nothing if the primary key exists (two first requests of a user can race)."""
    session.execute(upsert(session, table).values(**values).on_conflict_do_nothing())


MIGRATION_LOCK = 0x6269747A65726F  # "bitzero": the PostgreSQL advisory lock key of migrations


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; run at start and by the CLI).

    On PostgreSQL the replicas of a first deploy all start here at once: a transaction-scoped
    advisory lock lets one migrate while the others wait, then find the schema at head."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions for writing, or (``read_only``) for reading only: those must never write."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    with factory() as session, session.begin():
        yield session


CHECKPOINT_TRIES = 10


def scrub_database(engine: Engine, tries: int = CHECKPOINT_TRIES) -> bool:
    """After an erasure: move the WAL into the (secure-delete) main file and truncate it, so the
    erased text is in neither file. True when it succeeded; False while a reader pins old frames.

    Each try gives up at once when busy (no busy handler): a checkpoint that waits for readers
    holds the write lock meanwhile, and every other writer would wait with it. ``WalScrubber``
    retries later instead.

    PostgreSQL: a deleted row stays in its heap page until VACUUM marks the space reusable, and
    VACUUM neither zeroes it nor touches the WAL already written, its archives or replicas; only
    VACUUM FULL rewrites the table, and old WAL segments age out with checkpoints. Nothing here
    runs on PostgreSQL; the operator's retention of WAL archives and backups bounds erasure there."""
    if engine.dialect.name != "sqlite":
        return False
    for attempt in range(tries):
        if attempt:
            time.sleep(0.05)
        connection = engine.raw_connection()  # the driver's autocommit: a checkpoint needs no transaction
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA busy_timeout=0")
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")  # the pool's default again
        finally:
            connection.close()
        if not busy:
            return True
    return False


class WalScrubber:
    """Scrubs the SQLite WAL after erasures: at once when nothing pins it, else on every ``retry``
    (the app calls it each second) until it succeeds, so an open reader delays the scrub, never the
    erasure or anyone else's writes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending = threading.Event()

    def scrub(self) -> bool:
        """Scrub now if possible (half a second at most); True when the files hold no erased text
        (never on PostgreSQL: see ``scrub_database``)."""
        if self.engine.dialect.name != "sqlite":
            return False
        self._pending.set()
        return self.retry()

    def retry(self) -> bool:
        """One more scrub if one is owed; True when none is owed any more."""
        if not self._pending.is_set():
            return True
        self._pending.clear()
        if scrub_database(self.engine):
            return True
        self._pending.set()
        return False


def reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except Exception:  # readiness reports any failure as "not ready"
        return False
