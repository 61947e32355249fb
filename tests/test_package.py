"""Package-level promises: lazy heavy libraries, layering, devices table."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout.strip()


def test_import_is_lazy() -> None:
    # the import time itself (target < 0.5 s) is measured by benchmarks/import_time.py:
    # a wall-clock limit here would fail on a busy machine; loading no heavy library is
    # what keeps it fast, and that is checked exactly
    out = _run("""
        import sys
        import workbench
        names = ("torch", "onnxruntime", "numba", "panel", "plotly")
        print(",".join(m for m in names if m in sys.modules))
    """)
    assert out == ""


def test_core_profiling_never_loads_ui_libraries() -> None:
    out = _run("""
        import sys
        import workbench as wb
        from workbench.testing import toy_mlp
        wb.profile(toy_mlp(), backend="onnxruntime", budget_s=0.05, layers=False)
        print(",".join(m for m in ("panel", "ipywidgets", "plotly") if m in sys.modules))
    """)
    assert out == ""


def test_devices_table_has_every_backend() -> None:
    import workbench as wb

    table = wb.devices()
    assert {"torch", "onnxruntime"} <= set(table.backend)
    cpu_rows = table[(table.device == "cpu") & table.available]
    assert {"torch", "onnxruntime"} <= set(cpu_rows.backend)
    assert table[~table.available].reason.str.len().gt(0).all()


def test_public_names_are_never_shadowed_by_submodules() -> None:
    """``wb.evaluate`` stays the function even after ``workbench.<sub>`` modules are imported."""
    out = _run("""
        import importlib, pkgutil
        import workbench as wb
        for info in pkgutil.walk_packages(wb.__path__, "workbench."):
            if not info.name.startswith("workbench.dashboard"):
                importlib.import_module(info.name)
        wrong = []
        for name, target in wb._EXPORTS.items():
            module_name, _, attribute = target.partition(":")
            expected = importlib.import_module(module_name)
            if attribute:
                expected = getattr(expected, attribute)
            if getattr(wb, name) is not expected:
                wrong.append(name)
        print(",".join(wrong))
    """)
    assert out == ""
