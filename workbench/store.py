"""A local SQLite store of results: profiles and sweep points, written as they finish.

One file (default ``~/.cache/workbench/runs.sqlite``; set ``WORKBENCH_STORE`` or pass a
path) holds every saved `Profile` and `GenerationProfile` (as their JSON) and every
finished sweep point, so an interrupted sweep resumes where it stopped and the
dashboard's Runs page can list what was measured before; and records of SLO and
scenario results from any machine (`workbench.planning.records`: imported, compared,
planned from). Each call opens its
own short connection, so a store can be used from several threads (a dashboard) and
processes (a CLI sweep) at once.

Example:
    >>> store = Store("/tmp/runs.sqlite")
    >>> run_id = store.save_profile(wb.profile(m))
    >>> store.runs()            # one row per saved profile and per sweep
    >>> store.load_profile(run_id).latency.median
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench.errors import NotFoundError, StoreError, WorkbenchError

if TYPE_CHECKING:
    from workbench.profiling.generate import GenerationProfile
    from workbench.profiling.profile import Profile

#: environment variable naming the store file
STORE_ENV = "WORKBENCH_STORE"

#: ``PRAGMA application_id`` of a workbench store ("WBst"): a file without it is not ours
APPLICATION_ID = int.from_bytes(b"WBst", "big")

#: the store's tables and their columns (a store from before the marker has exactly these)
_TABLES = {
    "profiles": (
        "run_id TEXT PRIMARY KEY, created_at TEXT, model TEXT, recipe TEXT, backend TEXT, "
        "device TEXT, batch_size INTEGER, latency_ms REAL, sweep_id TEXT, payload TEXT"
    ),
    "points": "sweep_id TEXT, key TEXT, created_at TEXT, row TEXT, PRIMARY KEY (sweep_id, key)",
    "sweeps": "sweep_id TEXT PRIMARY KEY, created_at TEXT, model TEXT, meta TEXT",
}

#: measured results (SLO searches, scenario runs) from any machine, created on first use
#: so that stores written before it, and `_claim`'s check of them, stay as they were
_RECORDS = (
    "record_id TEXT PRIMARY KEY, saved_at TEXT, kind TEXT, model TEXT, machine TEXT, "
    "machine_id TEXT, p99_ms REAL, source TEXT, payload TEXT"
)
RECORD_COLUMNS = [
    "record_id", "saved_at", "kind", "model", "machine", "machine_id", "p99_ms", "source",
]  # fmt: skip

#: generation profiles (`wb.generate_profile`), created on first use like the records
_GENERATIONS = (
    "run_id TEXT PRIMARY KEY, created_at TEXT, model TEXT, backend TEXT, device TEXT, "
    "batch_size INTEGER, e2e_ms REAL, host TEXT, payload TEXT"
)

_RUN_COLUMNS = [
    "run_id", "kind", "created_at", "model", "recipe", "backend", "device", "batch_size",
    "latency_ms", "points", "sweep_id", "host",
]  # fmt: skip


def default_path() -> Path:
    """``$WORKBENCH_STORE`` if set, else ``~/.cache/workbench/runs.sqlite``."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "workbench" / "runs.sqlite"


class Store:
    """Results persisted in one SQLite file.

    Args:
        path: the database file (created with its folder when missing); default
            `default_path`. ``":memory:"`` is refused (each call opens a new connection).

    Raises:
        StoreError: the file cannot be created, or is not a workbench store: an SQLite
            file is used only when it is empty, carries the store's ``application_id``,
            or is a store written before that mark (exactly its three tables, marked
            on opening). Another application's database is never written to.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        if str(path) == ":memory:":
            raise WorkbenchError("Store needs a file path; use a temporary file for tests")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                _claim(db, self.path)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(
                f"cannot open the results store at {self.path}: {exc}; give another file "
                f"(--store, or ${STORE_ENV})"
            ) from exc

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # commits on success, rolls back on error
                yield db
        finally:
            db.close()

    # ---- profiles ----------------------------------------------------------------------
    def save_profile(self, profile: Profile, sweep_id: str | None = None) -> str:
        """Save a `Profile` (replacing one with the same ``run_id``); returns its run id."""
        with self._connect() as db:
            _insert_profile(db, profile, sweep_id)
        return profile.run_id

    def load_profile(self, run_id: str) -> Profile:
        """The saved `Profile` with ``run_id``.

        Raises:
            NotFoundError: no such run (also a `KeyError`).
            StoreError: the stored run is not a readable profile.
        """
        from workbench.profiling.profile import Profile

        with self._connect() as db:
            found = db.execute("SELECT payload FROM profiles WHERE run_id=?", (run_id,)).fetchone()
        if found is None:
            raise NotFoundError(
                f"no saved profile with run id {run_id!r} in {self.path}; "
                "wb.runs() lists the saved runs"
            )
        try:
            return Profile.from_dict(json.loads(found[0]))
        except (TypeError, ValueError, WorkbenchError) as exc:
            raise StoreError(f"run {run_id!r} in {self.path} is damaged: {exc}") from exc

    # ---- generation profiles -----------------------------------------------------------
    def save_generation(self, profile: GenerationProfile) -> str:
        """Save a `GenerationProfile`; returns its run id, a hash of its content (saving
        the same profile again keeps one copy)."""
        import hashlib
        import socket

        payload = profile.to_json(indent=None)
        run_id = "g" + hashlib.sha256(payload.encode()).hexdigest()[:15]
        with self._connect() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS generations ({_GENERATIONS})")
            db.execute(
                "INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run_id, _now(), profile.model, profile.backend, profile.device,
                    profile.batch_size, profile.e2e.median, socket.gethostname(), payload,
                ),
            )  # fmt: skip
        return run_id

    def load_generation(self, run_id: str) -> GenerationProfile:
        """The saved `GenerationProfile` with ``run_id``.

        Raises:
            NotFoundError: no such generation (also a `KeyError`).
            StoreError: the stored generation is not readable.
        """
        from workbench.profiling.generate import GenerationProfile

        with self._connect() as db:
            found = (
                db.execute("SELECT payload FROM generations WHERE run_id=?", (run_id,)).fetchone()
                if _has_table(db, "generations")
                else None
            )
        if found is None:
            raise NotFoundError(
                f"no saved generation with run id {run_id!r} in {self.path}; "
                "wb.runs() lists the saved runs"
            )
        try:
            return GenerationProfile.from_json(found[0])
        except (TypeError, ValueError, WorkbenchError) as exc:
            raise StoreError(f"run {run_id!r} in {self.path} is damaged: {exc}") from exc

    # ---- sweeps ------------------------------------------------------------------------
    def start_sweep(self, sweep_id: str, model: str, meta: dict[str, Any] | None = None) -> None:
        """Record that a sweep exists (kept if it already does, so resuming keeps its date)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO sweeps VALUES (?,?,?,?)",
                (sweep_id, _now(), model, json.dumps(meta or {}, default=str)),
            )

    def restart_sweep(self, sweep_id: str, model: str, meta: dict[str, Any] | None = None) -> None:
        """Discard a sweep's stored points and record it anew with ``meta`` (a fresh start)."""
        with self._connect() as db:
            db.execute("DELETE FROM points WHERE sweep_id=?", (sweep_id,))
            db.execute(
                "INSERT OR REPLACE INTO sweeps VALUES (?,?,?,?)",
                (sweep_id, _now(), model, json.dumps(meta or {}, default=str)),
            )

    def sweep_meta(self, sweep_id: str) -> dict[str, Any]:
        """The settings a sweep was started with (model, variants, backends, metric ...).

        Raises:
            NotFoundError: no such sweep (also a `KeyError`).
        """
        with self._connect() as db:
            found = db.execute("SELECT meta FROM sweeps WHERE sweep_id=?", (sweep_id,)).fetchone()
        if found is None:
            raise NotFoundError(
                f"no sweep {sweep_id!r} in {self.path}; wb.runs() lists the saved sweeps"
            )
        meta: dict[str, Any] = json.loads(found[0])
        return meta

    def save_point(
        self, sweep_id: str, row: dict[str, Any], profile: Profile | None = None
    ) -> None:
        """Save one finished sweep point, and the profile it measured, in one transaction.

        Either both are stored or neither is, so a sweep interrupted while saving leaves
        no profile without its point (which a resumed sweep would measure, and store,
        again).

        Args:
            sweep_id: the sweep.
            row: the point's values; its ``key`` (or, without one, variant / backend /
                device / batch size) identifies it within the sweep; a point with the
                same key is replaced.
            profile: the point's `Profile`, saved under ``sweep_id``.
        """
        key = str(row.get("key") or point_key(row))
        with self._connect() as db:
            if profile is not None:
                _insert_profile(db, profile, sweep_id)
            db.execute(
                "INSERT OR REPLACE INTO points VALUES (?,?,?,?)",
                (sweep_id, key, _now(), json.dumps(_jsonable(row))),
            )

    def points(self, sweep_id: str) -> pd.DataFrame:
        """The saved points of a sweep, in the order they finished (one row each)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT row FROM points WHERE sweep_id=? ORDER BY rowid", (sweep_id,)
            ).fetchall()
        return pd.DataFrame([json.loads(r[0]) for r in rows])

    def done_keys(self, sweep_id: str, *, failed: bool = True) -> set[str]:
        """Keys of the points of ``sweep_id`` already saved.

        Args:
            sweep_id: the sweep.
            failed: count failed points as done; False lets a resumed sweep retry them.
        """
        with self._connect() as db:
            rows = db.execute("SELECT key, row FROM points WHERE sweep_id=?", (sweep_id,))
            return {key for key, row in rows if failed or not json.loads(row).get("error")}

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete saved profiles, sweeps (a sweep with its points and profiles), generation
        profiles and records by id.

        Returns:
            How many were deleted (unknown ids are ignored).
        """
        ids = [str(i) for i in run_ids]
        marks = ",".join("?" * len(ids))
        if not ids:
            return 0
        with self._connect() as db:
            records = 0
            if _has_records(db):
                records = db.execute(
                    f"DELETE FROM records WHERE record_id IN ({marks})", ids
                ).rowcount
            if _has_table(db, "generations"):
                records += db.execute(
                    f"DELETE FROM generations WHERE run_id IN ({marks})", ids
                ).rowcount
            sweeps = db.execute(f"DELETE FROM sweeps WHERE sweep_id IN ({marks})", ids).rowcount
            db.execute(f"DELETE FROM points WHERE sweep_id IN ({marks})", ids)
            profiles = db.execute(
                f"DELETE FROM profiles WHERE run_id IN ({marks}) OR sweep_id IN ({marks})",
                ids + ids,
            ).rowcount
        return int(sweeps + profiles + records)

    # ---- records of measured results -----------------------------------------------------
    def save_record(
        self,
        record_id: str,
        payload: dict[str, Any],
        *,
        kind: str,
        model: str,
        machine: str,
        machine_id: str,
        p99_ms: float | None,
        source: str,
    ) -> str:
        """Save one measured result (its JSON data) with the columns it is found by.

        A record with the same ``record_id`` is replaced, so importing a file twice keeps
        one copy. `workbench.planning.records` builds the columns from the result.

        Args:
            record_id: the record's identity (a hash of its content).
            payload: the result's ``to_dict()``.
            kind: ``"slo"``, or the scenario kind (``"server"``, ``"offline"`` ...).
            model: the model measured.
            machine: the name of the machine it was measured on.
            machine_id: that machine's id (`workbench.scenarios.result.machine_record`).
            p99_ms: the p99 objective it was measured against (None: none).
            source: where the record came from (``"imported from box-b.json"``).

        Returns:
            ``record_id``.
        """
        with self._connect() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS records ({_RECORDS})")
            db.execute(
                "INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    record_id, _now(), kind, model, machine, machine_id, p99_ms, source,
                    json.dumps(_jsonable(payload)),
                ),
            )  # fmt: skip
        return record_id

    def records(self) -> pd.DataFrame:
        """The saved records, newest first: one row each (`RECORD_COLUMNS`, no payload)."""
        with self._connect() as db:
            if not _has_records(db):
                return pd.DataFrame(columns=RECORD_COLUMNS)
            rows = db.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records").fetchall()
        frame = pd.DataFrame(rows, columns=RECORD_COLUMNS)
        return frame.sort_values("saved_at", ascending=False, ignore_index=True)

    def load_record(self, record_id: str) -> tuple[str, dict[str, Any]]:
        """The kind and JSON data of the record ``record_id``.

        Raises:
            NotFoundError: no such record (also a `KeyError`).
        """
        with self._connect() as db:
            found = (
                db.execute(
                    "SELECT kind, payload FROM records WHERE record_id=?", (record_id,)
                ).fetchone()
                if _has_records(db)
                else None
            )
        if found is None:
            raise NotFoundError(
                f"no record {record_id!r} in {self.path}; `workbench import --list` lists them"
            )
        return str(found[0]), dict(json.loads(found[1]))

    # ---- listing -----------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """Past runs, newest first: one row per saved profile and one per sweep.

        Columns: run_id, kind (``"profile"``, ``"sweep"`` or ``"generation"``), created_at,
        model, recipe, backend, device, batch_size, latency_ms (median; a generation's
        end to end), points (sweeps), sweep_id, host (the machine a profile or generation
        ran on; a sweep's hosts, comma-separated).
        """
        with self._connect() as db:
            profiles = db.execute(
                "SELECT run_id, 'profile', created_at, model, recipe, backend, device, "
                "batch_size, latency_ms, NULL, sweep_id, "
                "json_extract(payload, '$.environment.hostname') FROM profiles"
            ).fetchall()
            sweeps = db.execute(
                "SELECT s.sweep_id, 'sweep', s.created_at, s.model, NULL, NULL, NULL, NULL, "
                "NULL, (SELECT COUNT(*) FROM points p WHERE p.sweep_id = s.sweep_id), "
                "s.sweep_id, (SELECT group_concat(DISTINCT json_extract(r.payload, "
                "'$.environment.hostname')) FROM profiles r WHERE r.sweep_id = s.sweep_id) "
                "FROM sweeps s"
            ).fetchall()
            generations = (
                db.execute(
                    "SELECT run_id, 'generation', created_at, model, NULL, backend, device, "
                    "batch_size, e2e_ms, NULL, NULL, host FROM generations"
                ).fetchall()
                if _has_table(db, "generations")
                else []
            )
        frame = pd.DataFrame(profiles + sweeps + generations, columns=_RUN_COLUMNS)
        return frame.sort_values("created_at", ascending=False, ignore_index=True)


def point_key(row: dict[str, Any]) -> str:
    """The identity of a sweep point: ``variant|backend|device|batch_size``."""
    return "|".join(str(row.get(k, "")) for k in ("variant", "backend", "device", "batch_size"))


def runs(path: str | Path | None = None) -> pd.DataFrame:
    """Past runs in the store as a DataFrame (``wb.runs()``); see `Store.runs`.

    Example:
        >>> wb.runs().head()
    """
    return Store(path).runs()


def _insert_profile(db: sqlite3.Connection, profile: Profile, sweep_id: str | None) -> None:
    db.execute(
        "INSERT OR REPLACE INTO profiles VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            profile.run_id,
            profile.created_at,
            profile.model,
            profile.recipe_name,
            profile.backend,
            profile.device,
            profile.batch_size,
            profile.latency.median,
            sweep_id,
            profile.to_json(indent=None),
        ),
    )


def _has_records(db: sqlite3.Connection) -> bool:
    return _has_table(db, "records")


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,))
    return found.fetchone() is not None


def _claim(db: sqlite3.Connection, path: Path) -> None:
    """Check that ``db`` is a workbench store, making it one if it is empty or unmarked.

    Runs in one immediate transaction, so two processes opening a new file at once
    agree on it; refuses, without writing, any database with other tables.
    """
    if db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return  # our own store (the common case): nothing to write, no lock taken
    db.execute("BEGIN IMMEDIATE")
    mark = db.execute("PRAGMA application_id").fetchone()[0]
    found = {
        name: [col[1] for col in db.execute(f"PRAGMA table_info({name!r})")]
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if mark != APPLICATION_ID:
        ours = {name: [c.split()[0] for c in _columns(name)] for name in _TABLES}
        if mark != 0 or (found and found != ours):
            what = f"tables {', '.join(sorted(found))}" if found else f"application id {mark}"
            raise StoreError(
                f"{path} is not a workbench results store (it holds {what}); workbench "
                f"writes only to its own stores: give another file (--store, or ${STORE_ENV})"
            )
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for name, definition in _TABLES.items():
        db.execute(f"CREATE TABLE IF NOT EXISTS {name} ({definition})")


def _columns(table: str) -> list[str]:
    """The column definitions of one of the store's tables."""
    definition = _TABLES[table].split(", PRIMARY KEY")[0]
    return [c.strip() for c in definition.split(",")]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    # numpy scalars and NaN become plain JSON (NaN as null, so other readers cope)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
