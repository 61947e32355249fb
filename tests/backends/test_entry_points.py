"""Third-party backends arrive through the ``workbench.backends`` entry-point group."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import workbench as wb
from workbench.backends import base


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed-looking distribution (dist-info + module) providing a backend."""
    (tmp_path / "wb_plugin_demo.py").write_text(
        textwrap.dedent("""
        from workbench.testing import FakeBackend

        class DemoBackend(FakeBackend):
            name = "demo-plugin"
    """)
    )
    dist = tmp_path / "wb_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wb-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[workbench.backends]\ndemo-plugin = wb_plugin_demo:DemoBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    yield "demo-plugin"
    base._FACTORIES.pop("demo-plugin", None)
    base._INSTANCES.pop("demo-plugin", None)
    sys.modules.pop("wb_plugin_demo", None)


def test_entry_point_backend_is_listed_and_usable(plugin_on_path: str) -> None:
    assert plugin_on_path in wb.backend_names()
    assert "wb_plugin_demo" not in sys.modules  # listing a plugin does not import it
    backend = wb.backend(plugin_on_path)
    assert backend.name == "demo-plugin"
    table = wb.devices()
    assert table[table.backend == plugin_on_path].available.all()
