"""Run records from several machines in one store: import, compare, and plan from them.

Every `SloResult` and `ScenarioResult` records the machine it was measured on
(`workbench.scenarios.result.machine_record`) and the model it measured. Results measured
elsewhere (another server, a GPU box) are written there with ``--json``, copied here and
imported into the same store as the local ones; every row then says where it was
measured, and `compare` puts one model's rates at one objective side by side. A record
that does not say its machine or its model is refused: a rate is worthless without
them. Records measured at different objectives or of different models are never
compared or planned together (the refusal names both).

Example:
    >>> from workbench.planning import records
    >>> records.import_results(["box-b.json", "here.json"])   # written by workbench slo --json
    >>> records.compare(model="digits-cnn", p99_ms=5)         # one row per machine x config
    >>> wb.plan([("box-b.toml", records.load_record("3f2a..."))], target_rate_per_s=2000,
    ...         p99_ms=5)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import InputError, NotFoundError
from workbench.store import Store

#: columns of `records` and `compare`
COLUMNS = [
    "record_id", "model", "measured_on", "where", "cpu", "gpus", "kind", "variant", "backend",
    "device", "objective_p99_ms", "rate_per_s", "p99_ms", "valid", "joules_per_inference",
    "source", "saved_at",
]  # fmt: skip

#: relative slack when comparing two objectives (JSON rounding)
_SAME = 1e-9
#: a record's id: the first 16 hex digits of its content's SHA-256
_RECORD_ID = re.compile(r"[0-9a-f]{16}")


class RecordError(InputError):
    """A result that cannot be recorded, or records that cannot be compared together."""


def save_result(result: Any, store: Store | str | Path | None = None, *, source: str = "") -> str:
    """Save a measured `SloResult` or `ScenarioResult` as a record in the store.

    Args:
        result: the result; it must record its machine and its model.
        store: a `Store` or its path (default: the default store).
        source: where it came from (default ``"saved here"``).

    Returns:
        The record's id: a hash of its content, so saving it again replaces it.

    Raises:
        RecordError: not a result, or one that does not record its machine or model.

    Example:
        >>> save_result(wb.slo("digits-cnn", p99_ms=5))
        '3f2a9c0d1e6b7a58'
    """
    from workbench.scenarios.result import ScenarioResult
    from workbench.scenarios.slo import SloResult

    p99: float | None
    if isinstance(result, SloResult):
        kind, model, p99 = "slo", result.model, result.p99_ms
    elif isinstance(result, ScenarioResult):
        kind, model = result.kind, _name_and_recipe(result.model)[0]
        p99 = result.settings.get("target_latency_ms")
    else:
        raise RecordError(f"want an SloResult or a ScenarioResult to record, got {result!r:.80}")
    _checked(result, source)
    payload = result.to_dict()
    record_id = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return _store(store).save_record(
        record_id, payload, kind=kind, model=model, machine=str(result.machine["name"]),
        machine_id=str(result.machine["id"]), p99_ms=p99, source=source or "saved here",
    )  # fmt: skip


def import_results(
    paths: str | Path | Sequence[str | Path], store: Store | str | Path | None = None
) -> pd.DataFrame:
    """Import results measured anywhere (JSON written by ``workbench slo --json`` or
    ``workbench scenario --json``, or by ``to_json``) into the store.

    Every file is read and checked before any is saved, so a bad file imports nothing.

    Args:
        paths: one file or several.
        store: a `Store` or its path (default: the default store).

    Returns:
        The imported records' rows (`records` columns), each saying where it was measured.

    Raises:
        RecordError: a file that is not such a result, or one that does not record its
            machine or model (one line naming the file).

    Example:
        >>> wb.import_results(["gpu-box.json"])[["measured_on", "where", "rate_per_s"]]
    """
    from workbench.profiling.results import load_json

    files = [paths] if isinstance(paths, str | Path) else list(paths)
    if not files:
        raise RecordError("import_results needs at least one JSON file")
    results = []
    for path in files:
        data = load_json(path, "a result")
        results.append((_result_from(data, Path(path).name), f"imported from {Path(path).name}"))
    target = _store(store)
    for result, source in results:  # every file checked before the first is saved
        _checked(result, source)
    ids = [save_result(result, target, source=source) for result, source in results]
    table = records(target)
    return table[table["record_id"].isin(ids)].reset_index(drop=True)


def is_record_id(text: str) -> bool:
    """Whether ``text`` has the form of a record id (16 lowercase hex digits)."""
    return _RECORD_ID.fullmatch(text) is not None


def load_record(record_id: str, store: Store | str | Path | None = None) -> Any:
    """The `SloResult` or `ScenarioResult` saved as ``record_id`` (a `wb.plan` candidate).

    Raises:
        NotFoundError: no such record.
    """
    _, payload = _store(store).load_record(record_id)
    return _result_from(payload, f"record {record_id}")


def records(store: Store | str | Path | None = None, *, model: str | None = None) -> pd.DataFrame:
    """Every record in the store, one row per measured configuration, saying where it was
    measured (``where``: ``"here"`` for this machine, else ``"elsewhere"``).

    Args:
        store: a `Store` or its path (default: the default store).
        model: only this model's records.

    Returns:
        A DataFrame with `COLUMNS`: an SLO record gives a row per variant x backend x
        device with its highest rate within ``objective_p99_ms``; a scenario record one
        row with its throughput (``rate_per_s``) and measured p99.
    """
    from workbench.scenarios.result import machine_record

    target = _store(store)
    here = machine_record()["id"]
    rows: list[dict[str, Any]] = []
    for saved in target.records().itertuples():
        if model is not None and saved.model != model:
            continue
        _, payload = target.load_record(saved.record_id)
        machine = payload.get("machine") or {}
        common = {
            "record_id": saved.record_id,
            "model": saved.model,
            "measured_on": saved.machine,
            "where": "here" if saved.machine_id == here else "elsewhere",
            "cpu": machine.get("cpu", ""),
            "gpus": ", ".join(machine.get("gpus", [])),
            "kind": saved.kind,
            "objective_p99_ms": saved.p99_ms,
            "source": saved.source,
            "saved_at": saved.saved_at,
        }
        rows += [{**common, **row} for row in _rows(saved.kind, payload)]
    return pd.DataFrame(rows, columns=COLUMNS)


def compare(
    record_ids: Sequence[str] | None = None,
    *,
    model: str | None = None,
    p99_ms: float | None = None,
    store: Store | str | Path | None = None,
) -> pd.DataFrame:
    """SLO records of one model at one objective side by side, the highest rate first.

    Either name the records, or give ``model`` and ``p99_ms`` to take every SLO record of
    that model measured at that objective or a tighter one (its rate holds, conservatively).

    Args:
        record_ids: the records to compare.
        model: the model (required without ``record_ids``).
        p99_ms: the objective; records measured at a looser one are refused.
        store: a `Store` or its path (default: the default store).

    Returns:
        The rows of `records` for those records, highest ``rate_per_s`` first.

    Raises:
        RecordError: records of different models, at different objectives, at a looser
            objective than ``p99_ms``, or not SLO searches (one line naming them).
        NotFoundError: no such record, or no record of ``model`` at ``p99_ms``.

    Example:
        >>> compare(model="digits-cnn", p99_ms=5)[["measured_on", "where", "rate_per_s"]]
    """
    table = records(store, model=model)
    if record_ids is None:
        if model is None or p99_ms is None:
            raise RecordError("compare needs record ids, or a model and its p99_ms objective")
        slo_rows = table[table["kind"] == "slo"]
        chosen = slo_rows[slo_rows["objective_p99_ms"] <= p99_ms * (1 + _SAME)]
        if chosen.empty:
            held = sorted({f"{o:g} ms" for o in slo_rows["objective_p99_ms"]})
            raise NotFoundError(
                f"no SLO record of {model} at p99 <= {p99_ms:g} ms in the store"
                + (f" (it holds {', '.join(held)})" if held else "")
                + "; import one with `workbench import FILE.json`"
            )
    else:
        missing = sorted(set(record_ids) - set(table["record_id"]))
        if missing:
            raise NotFoundError(f"no record {', '.join(missing)}; `workbench import --list`")
        chosen = table[table["record_id"].isin(record_ids)]
    _check_comparable(chosen, p99_ms)
    return chosen.sort_values("rate_per_s", ascending=False, kind="stable", ignore_index=True)


def _check_comparable(rows: pd.DataFrame, p99_ms: float | None) -> None:
    """Refuse, in one line, records that measure different things."""
    first = rows.groupby("record_id", sort=False).first()
    for record_id, row in first.iterrows():
        if row["kind"] != "slo":
            raise RecordError(
                f"record {record_id} ({row['measured_on']}) is a scenario run ({row['kind']}), "
                "not an SLO search: compare the highest rates within one objective "
                "(workbench slo)"
            )
    models = first.groupby("model").groups
    if len(models) > 1:
        which = "; ".join(f"{m}: {', '.join(map(str, ids))}" for m, ids in models.items())
        raise RecordError(f"the records are of different models ({which}); compare one model")
    objectives = sorted({float(o) for o in first["objective_p99_ms"]})
    if p99_ms is None and len(objectives) > 1:
        raise RecordError(
            f"the records were measured at different p99 objectives "
            f"({', '.join(f'{o:g} ms' for o in objectives)}); compare one, or pass p99_ms to "
            "take those measured at it or tighter"
        )
    if p99_ms is not None and objectives and objectives[-1] > p99_ms * (1 + _SAME):
        looser = first[first["objective_p99_ms"] > p99_ms * (1 + _SAME)].iloc[0]
        raise RecordError(
            f"record {looser.name} ({looser['measured_on']}) was measured at p99 <= "
            f"{looser['objective_p99_ms']:g} ms, looser than the {p99_ms:g} ms objective; "
            f"rerun workbench slo --p99-ms {p99_ms:g} there"
        )


def _rows(kind: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured configurations of a record's payload."""
    if kind == "slo":
        return [
            {
                "variant": row.get("variant"),
                "backend": row.get("backend"),
                "device": row.get("device"),
                "rate_per_s": _number(row.get("max_rate_per_s")),
                "p99_ms": _number(row.get("p99_ms")),
                "valid": bool((_number(row.get("max_rate_per_s")) or 0) > 0),
                "joules_per_inference": math.nan,
            }
            for row in payload.get("table", [])
        ]
    metrics = payload.get("metrics", {})
    return [
        {
            "variant": _name_and_recipe(str(payload.get("model", "")))[1],
            "backend": payload.get("backend"),
            "device": payload.get("device"),
            "rate_per_s": _number(metrics.get("throughput_per_s")),
            "p99_ms": _number(metrics.get("p99_ms")),
            "valid": bool(metrics.get("valid")),
            "joules_per_inference": _number(metrics.get("joules_per_inference")),
        }
    ]


def _name_and_recipe(label: str) -> tuple[str, str]:
    """``("digits-cnn", "int8-static")`` from a scenario's ``"digits-cnn (int8-static)"``."""
    name, _, recipe = label.rpartition(" (")
    return (name, recipe.removesuffix(")")) if name and label.endswith(")") else (label, "")


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _result_from(data: Any, what: str) -> Any:
    """An `SloResult` or `ScenarioResult` from its JSON data, or one clear line."""
    from workbench.scenarios.result import ScenarioResult
    from workbench.scenarios.slo import SloResult

    if isinstance(data, dict) and "table" in data and "p99_ms" in data:
        kind: Any = SloResult
    elif isinstance(data, dict) and "queries" in data and "kind" in data:
        kind = ScenarioResult
    else:
        raise RecordError(
            f"{what}: not a result written by `workbench slo --json` or `workbench scenario --json`"
        )
    try:
        return kind.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{what}: a damaged {kind.__name__} ({exc!r:.120})") from None


def _checked(result: Any, source: str) -> None:
    """What `save_result` refuses, before anything is saved."""
    what = source.removeprefix("imported from ") or f"this {type(result).__name__}"
    if not result.machine.get("id"):
        raise RecordError(
            f"{what} does not record the machine it was measured on (written before "
            "workbench recorded machines): rerun it there with this version of workbench"
        )
    if not result.model:
        raise RecordError(
            f"{what} does not record the model it measured: rerun it with this version of workbench"
        )


def _store(store: Store | str | Path | None) -> Store:
    return store if isinstance(store, Store) else Store(store)
