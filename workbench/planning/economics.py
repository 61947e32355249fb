"""Machine economics as data: what one machine costs to rent or own and to power.

A small TOML file per machine, kept by the user. Every quantity carries its unit in the
value (``"1.20 USD/h"``, ``"300 W"``, ``"4 years"``) and the unit is checked, so a price
per month typed where a price per hour belongs is refused instead of silently used:

    name = "example-box"
    example = true                        # figures are placeholders, not a quote
    source = "where the figures came from"
    rental_price = "1.20 USD/h"           # or: purchase_price + lifetime (+ upkeep)
    declared_power = "300 W"              # or measured_power = "280 W"
    pue = 1.4
    electricity_price = "0.15 USD/kWh"

Power is ``declared_power`` (a datasheet or nameplate figure, labelled declared wherever
it is used) or ``measured_power`` (read from counters during a run); with neither, every
energy figure of a plan says unavailable.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.errors import InputError

HOURS_PER_YEAR = 8760.0

#: unit spellings accepted per kind, each with its factor to the canonical unit
_PER_HOUR = {"/h": 1.0, "/hour": 1.0}
_PER_YEAR = {"/year": 1.0, "/yr": 1.0, "/y": 1.0}
_PER_ENERGY = {"/kwh": 1.0, "/mwh": 1e3}  # divisors to a price per kWh
_WATTS = {"w": 1.0, "kw": 1e3}
_YEARS = {"year": 1.0, "years": 1.0, "y": 1.0, "yr": 1.0, "month": 1 / 12, "months": 1 / 12}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")
_CURRENCY = re.compile(r"^([A-Z]{3}|[$€£¥])\s*(/.*)?$")

KEYS = {
    "name": "the machine's name (text)",
    "example": "true when the figures are placeholders (bool)",
    "source": "where the figures came from (text)",
    "rental_price": "e.g. '1.20 USD/h'",
    "purchase_price": "e.g. '12000 USD'",
    "lifetime": "e.g. '4 years'",
    "upkeep": "e.g. '600 USD/year'",
    "declared_power": "e.g. '300 W' (datasheet)",
    "measured_power": "e.g. '280 W' (counters)",
    "pue": "a number >= 1, e.g. 1.4",
    "electricity_price": "e.g. '0.15 USD/kWh'",
}


@dataclass(frozen=True)
class Cost:
    """What machines cost over a period, by component (energy None: not known)."""

    capital: float
    upkeep: float
    energy: float | None

    @property
    def total(self) -> float:
        """Capital + upkeep + energy (energy counted as 0 when not known)."""
        return self.capital + self.upkeep + (self.energy or 0.0)


class EconomicsError(InputError):
    """A machine economics file or value is missing, malformed or out of range."""


@dataclass(frozen=True)
class Machine:
    """One machine's economics. Money is in ``currency``; None means not given.

    Attributes:
        name: the machine's name.
        currency: ISO code or symbol shared by every price of the file.
        rental_per_hour: rental price per hour (exclusive with ``purchase``).
        purchase: purchase price of one machine.
        lifetime_years: years a purchased machine is used before it is replaced.
        upkeep_per_year: yearly upkeep of one purchased machine (0 when not given).
        power_watts: electrical power of one machine under load.
        power_basis: ``"declared"`` or ``"measured"`` (empty without power).
        pue: power usage effectiveness of the facility (>= 1; 1 when not given).
        electricity_per_kwh: electricity price per kWh.
        source: where the figures came from.
        example: True when the figures are placeholders, not prices to plan with.
    """

    name: str
    currency: str
    rental_per_hour: float | None = None
    purchase: float | None = None
    lifetime_years: float | None = None
    upkeep_per_year: float = 0.0
    power_watts: float | None = None
    power_basis: str = ""
    pue: float = 1.0
    electricity_per_kwh: float | None = None
    source: str = ""
    example: bool = False

    def __post_init__(self) -> None:
        where = f"machine {self.name!r}"
        if (self.rental_per_hour is None) == (self.purchase is None):
            raise EconomicsError(
                f"{where}: give either rental_price (e.g. '1.20 USD/h') or purchase_price "
                "with lifetime, not both and not neither"
            )
        for key, value in (
            ("rental_price", self.rental_per_hour),
            ("purchase_price", self.purchase),
            ("upkeep", self.upkeep_per_year),
            ("electricity_price", self.electricity_per_kwh),
            ("power", self.power_watts),
        ):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise EconomicsError(f"{where}: {key} must be a finite number >= 0, got {value}")
        if self.rental_per_hour is not None and self.rental_per_hour <= 0:
            raise EconomicsError(f"{where}: rental_price must be positive, got 0")
        if self.purchase is not None:
            if self.lifetime_years is None:
                raise EconomicsError(f"{where}: purchase_price needs a lifetime, e.g. '4 years'")
            if not (math.isfinite(self.lifetime_years) and self.lifetime_years > 0):
                raise EconomicsError(
                    f"{where}: lifetime must be more than 0 years, got {self.lifetime_years:g}"
                )
        if not (math.isfinite(self.pue) and self.pue >= 1):
            raise EconomicsError(
                f"{where}: pue must be >= 1 (facility power / IT power), got {self.pue:g}"
            )
        if self.power_watts is not None and self.power_basis not in ("declared", "measured"):
            raise EconomicsError(f"{where}: power must be declared or measured")

    @property
    def power_label(self) -> str:
        """``"declared 300 W"``, ``"measured 280 W"`` or why energy is unavailable."""
        if self.power_watts is None:
            return "unavailable: no declared_power or measured_power in the machine file"
        return f"{self.power_basis} {self.power_watts:g} W"

    def cost(self, machines: int, years: float) -> Cost:
        """Total cost of ``machines`` machines over ``years``, by component.

        Capital is the rental over the period, or one purchase per machine per lifetime
        started (a machine is replaced at the end of its life). Energy is the power for
        every hour of the period times the PUE and the electricity price (None when
        either is unknown: a rented machine's price usually includes it).

        """
        hours = HOURS_PER_YEAR * years
        if self.rental_per_hour is not None:
            capital = machines * self.rental_per_hour * hours
        else:
            assert self.purchase is not None and self.lifetime_years is not None
            # a small epsilon so 3 years of a 3-year lifetime buy one machine, not two
            lives = math.ceil(years / self.lifetime_years - 1e-9)
            capital = machines * self.purchase * lives
        upkeep = machines * self.upkeep_per_year * years
        energy = None
        if self.power_watts is not None and self.electricity_per_kwh is not None:
            kwh = machines * self.power_watts / 1e3 * hours * self.pue
            energy = kwh * self.electricity_per_kwh
        return Cost(capital, upkeep, energy)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Machine:
        """Rebuild from `to_dict` output."""
        return cls(**data)


def load_machine(path: str | Path) -> Machine:
    """Read a machine economics TOML file (see the module docstring for its keys).

    Raises:
        EconomicsError: the file is not TOML, has unknown keys, a value of the wrong
            unit, a negative or missing price, a lifetime of 0 or a PUE below 1.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise EconomicsError(f"{path}: not a valid TOML file ({exc})") from None
    return machine_from_mapping(data, where=str(path))


def machine_from_mapping(data: dict[str, Any], where: str = "machine") -> Machine:
    """A `Machine` from the keys of a TOML file (or any mapping of the same shape).

    Raises:
        EconomicsError: as `load_machine`.
    """
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise EconomicsError(f"{where}: unknown key(s) {unknown}; the keys are {sorted(KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise EconomicsError(f'{where}: give the machine a name, e.g. name = "box-a"')
    if "declared_power" in data and "measured_power" in data:
        raise EconomicsError(f"{where}: give declared_power or measured_power, not both")
    currencies: set[str] = set()

    def money(key: str, per: dict[str, float] | None) -> float | None:
        if key not in data:
            return None
        value, unit = _quantity(where, key, data[key])
        match = _CURRENCY.match(unit)
        suffix = (match.group(2) or "").lower().replace(" ", "") if match else None
        if match is None or (per is None and suffix) or (per is not None and suffix not in per):
            wanted = "a currency" + ("" if per is None else f" per {'|'.join(per)}")
            raise EconomicsError(
                f"{where}: {key} = {data[key]!r} has the wrong unit; want {wanted}, {KEYS[key]}"
            )
        currencies.add(match.group(1).upper())
        return value / (per[suffix] if per is not None and suffix else 1.0)

    rental = money("rental_price", _PER_HOUR)
    purchase = money("purchase_price", None)
    upkeep = money("upkeep", _PER_YEAR)
    electricity = money("electricity_price", _PER_ENERGY)
    if len(currencies) > 1:
        raise EconomicsError(f"{where}: prices in several currencies {sorted(currencies)}")
    power_key = "measured_power" if "measured_power" in data else "declared_power"
    pue = data.get("pue", 1.0)
    if isinstance(pue, bool) or not isinstance(pue, int | float):
        raise EconomicsError(f"{where}: pue must be a number >= 1, got {pue!r}")
    return Machine(
        name=name.strip(),
        currency=currencies.pop() if currencies else "",
        rental_per_hour=rental,
        purchase=purchase,
        lifetime_years=_unit(where, data, "lifetime", _YEARS),
        upkeep_per_year=upkeep or 0.0,
        power_watts=_unit(where, data, power_key, _WATTS),
        power_basis=power_key.partition("_")[0] if power_key in data else "",
        pue=float(pue),
        electricity_per_kwh=electricity,
        source=_text(where, data, "source"),
        example=_flag(where, data, "example"),
    )


def _quantity(where: str, key: str, raw: Any) -> tuple[float, str]:
    """``"1.20 USD/h"`` as ``(1.2, "USD/h")``; a bare number is refused (no unit)."""
    match = _QUANTITY.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise EconomicsError(
            f"{where}: {key} = {raw!r} needs a number and a unit in quotes, {KEYS[key]}"
        )
    value = float(match.group(1))
    if value < 0:
        raise EconomicsError(f"{where}: {key} must not be negative, got {raw!r}")
    return value, match.group(2)


def _unit(where: str, data: dict[str, Any], key: str, units: dict[str, float]) -> float | None:
    if key not in data:
        return None
    value, unit = _quantity(where, key, data[key])
    factor = units.get(unit.lower())
    if factor is None:
        raise EconomicsError(
            f"{where}: {key} = {data[key]!r} has the wrong unit; want one of "
            f"{sorted(units)}, {KEYS[key]}"
        )
    return value * factor


def _text(where: str, data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise EconomicsError(f"{where}: {key} must be text, got {value!r}")
    return value


def _flag(where: str, data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise EconomicsError(f"{where}: {key} must be true or false, got {value!r}")
    return value
