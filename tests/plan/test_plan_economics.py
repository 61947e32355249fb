"""Machine economics files: units read and checked, bad files refused in one line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.errors import WorkbenchError
from workbench.planning import EconomicsError, Machine, load_machine

DOCS = Path(__file__).resolve().parents[2] / "docs" / "machines"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "box.toml"
    path.write_text(text)
    return path


def test_an_owned_machine_reads_every_unit(tmp_path: Path) -> None:
    m = load_machine(
        write(
            tmp_path,
            'name = "owned"\npurchase_price = "12000 EUR"\nlifetime = "48 months"\n'
            'upkeep = "600 EUR/year"\nmeasured_power = "0.25 kW"\npue = 1.5\n'
            'electricity_price = "200 EUR/MWh"\nsource = "test"\n',
        )
    )
    assert (m.purchase, m.lifetime_years, m.upkeep_per_year) == (12000.0, 4.0, 600.0)
    assert (m.power_watts, m.power_basis, m.pue) == (250.0, "measured", 1.5)
    assert m.electricity_per_kwh == pytest.approx(0.2) and m.currency == "EUR"
    assert m.power_label == "measured 250 W"


def test_costs_add_up_by_hand() -> None:
    m = Machine(
        "owned", "EUR", purchase=12000.0, lifetime_years=4.0, upkeep_per_year=600.0,
        power_watts=250.0, power_basis="declared", pue=1.5, electricity_per_kwh=0.2,
    )  # fmt: skip
    one = m.cost(2, 1)
    # 2 machines bought; 2 x 600 upkeep; 2 x 0.25 kW x 8760 h x 1.5 x 0.2 = 1314
    assert (one.capital, one.upkeep, one.energy) == (24000.0, 1200.0, pytest.approx(1314.0))
    assert one.total == pytest.approx(26514.0)
    # five years outlive a 4-year lifetime: every machine is bought twice
    assert m.cost(2, 5).capital == 48000.0 and m.cost(2, 4).capital == 24000.0
    rented = Machine("rented", "USD", rental_per_hour=2.0)
    assert rented.cost(3, 1).total == 3 * 2.0 * 8760 and rented.cost(3, 1).energy is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\nrental_price = "1 USD/h"\ncolour = "red"\n', "unknown key(s) ['colour']"),
        ('name = "x"\nrental_price = "1 USD/month"\n', "'1 USD/month' has the wrong unit"),
        ('name = "x"\nrental_price = 1.5\n', "needs a number and a unit"),
        ('name = "x"\nrental_price = "1 USD/h"\ndeclared_power = "300 USD"\n', "wrong unit"),
        ('name = "x"\nrental_price = "-1 USD/h"\n', "must not be negative"),
        ('name = "x"\ndeclared_power = "300 W"\n', "give either rental_price"),
        ('name = "x"\nrental_price = "1 USD/h"\npurchase_price = "9 USD"\n', "not both"),
        ('name = "x"\npurchase_price = "9000 USD"\n', "needs a lifetime"),
        ('name = "x"\npurchase_price = "9000 USD"\nlifetime = "0 years"\n', "more than 0 years"),
        ('name = "x"\nrental_price = "1 USD/h"\npue = 0.9\n', "pue must be >= 1"),
        ('name = "x"\nrental_price = "1 USD/h"\nelectricity_price = "1 EUR/kWh"\n', "currencies"),
        ('rental_price = "1 USD/h"\n', "give the machine a name"),
        ('name = "x"\nrental_price = "0 USD/h"\n', "rental_price must be positive"),
        ("name = [", "not a valid TOML file"),
    ],
    ids=[
        "unknown-key", "wrong-unit", "no-unit", "power-in-money", "negative", "no-price",
        "both-prices", "no-lifetime", "lifetime-0", "pue-below-1", "two-currencies", "no-name",
        "zero-rental", "not-toml",
    ],
)  # fmt: skip
def test_bad_files_are_refused_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(EconomicsError) as caught:
        load_machine(write(tmp_path, text))
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, WorkbenchError)


def test_the_shipped_examples_load_and_say_they_are_examples() -> None:
    files = sorted(DOCS.glob("*.toml"))
    assert files, "docs/machines holds the example machine files"
    for path in files:
        m = load_machine(path)
        assert m.example and m.source, path
