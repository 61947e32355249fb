"""Package-level promises: lazy heavy libraries, layering, devices table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest


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


ROOT = Path(__file__).resolve().parents[1]
#: an install command naming the bare distribution "workbench" (someone else's on PyPI), or
#: the bare name with extras ("workbench[cuda]")
_BARE_INSTALL = re.compile(
    r"""pip install\s+(-\S+\s+)*["']?workbench(\[|["'\s]|$)|(?<![\w./-])workbench\[[a-z]""", re.M
)


def _pyproject(path: Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def test_the_distribution_name_is_ours_everywhere() -> None:
    """``workbench`` on PyPI is an unrelated project: installs, plugins and version lookups
    all name `DISTRIBUTION`, and no document tells anyone to install ``workbench``."""
    from packaging.requirements import Requirement

    from workbench.machine import DISTRIBUTION

    project = _pyproject(ROOT / "pyproject.toml")
    assert project["name"] == DISTRIBUTION != "workbench"
    own = [Requirement(r) for reqs in project["optional-dependencies"].values() for r in reqs]
    assert all(r.name != "workbench" for r in own)
    plugins = sorted((ROOT / "extensions").glob("*/pyproject.toml"))
    assert len(plugins) >= 3
    for path in plugins:
        names = [Requirement(r).name for r in _pyproject(path)["dependencies"]]
        assert DISTRIBUTION in names and "workbench" not in names, path
    texts = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("extensions/*/README.md")]
    texts += [*ROOT.glob("workbench/**/*.py"), *ROOT.glob("binder/*")]
    bare = [
        str(p.relative_to(ROOT))
        for p in texts
        if p.is_file() and _BARE_INSTALL.search(p.read_text())
    ]
    assert bare == []
    # the pattern finds them
    assert _BARE_INSTALL.search('pip install "workbench[cluster]"')
    assert _BARE_INSTALL.search("e.g. `workbench[cuda]`")
    assert not _BARE_INSTALL.search('pip install "inference-workbench[cuda]"')


def test_versions_are_read_from_our_distribution() -> None:
    from importlib import metadata

    from workbench.machine import DISTRIBUTION, library_versions

    version = _pyproject(ROOT / "pyproject.toml")["version"]
    assert metadata.version(DISTRIBUTION) == version
    assert library_versions()["workbench"] == version


def _installed(*args: str) -> subprocess.CompletedProcess[str]:
    """scripts/installed.py, setup.sh's check of what is already installed."""
    script = ROOT / "scripts" / "installed.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


def test_setup_finds_this_checkout_installed_and_skips_it() -> None:
    done = _installed(str(ROOT), "", "--editable")
    assert (done.returncode, done.stdout) == (0, "")


def test_setup_reinstalls_what_is_missing_or_installed_from_elsewhere(tmp_path: Path) -> None:
    from workbench.machine import DISTRIBUTION

    project = tmp_path / "project"
    project.mkdir()
    toml = '[project]\nname = "{}"\nversion = "0.1.0"\ndependencies = [{}]\n'
    (project / "pyproject.toml").write_text(toml.format("wb-test-never-installed", ""))
    done = _installed(str(project))
    assert done.returncode == 1 and "wb-test-never-installed is not installed" in done.stdout
    # our own name, but this folder is not where it was installed from
    (project / "pyproject.toml").write_text(toml.format(DISTRIBUTION, ""))
    done = _installed(str(project))
    assert done.returncode == 1 and f"not from {project}" in done.stdout


def test_setup_names_each_requirement_not_met() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("installed", ROOT / "scripts" / "installed.py")
    assert spec is not None and spec.loader is not None
    installed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed)
    unmet = installed._unmet(["numpy>=1.26", "numpy<1", "wb-test-absent-dependency"], set())
    assert [u.split(" (")[0] for u in unmet] == ["numpy<1", "wb-test-absent-dependency"]
    assert "(not installed)" in unmet[1]


def _fake_torchvision(folder: Path, failure: str, anywhere: bool = False) -> dict[str, str]:
    """A torchvision that fails to import as PyPI's CUDA build does beside a CPU torch
    (``failure`` raised from its operator registrations, or from the package itself
    ``anywhere``), and an environment that finds it."""
    package = folder / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text(
        ("raise " + failure if anywhere else "from torchvision import _meta_registrations")
        + "\nfrom torchvision import models\n"
    )
    (package / "_meta_registrations.py").write_text(f"raise {failure}\n")
    (package / "models.py").write_text("def mobilenet_v3_small():\n    return 'a model'\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_torchvision_whose_operators_do_not_load_still_gives_its_models(tmp_path) -> None:
    env = _fake_torchvision(tmp_path, 'RuntimeError("operator torchvision::nms does not exist")')
    plain = _python("import torchvision", env)
    assert plain.returncode != 0 and "torchvision::nms" in plain.stderr
    guarded = _python(
        """
        from workbench.loaders.thirdparty import torchvision
        print(torchvision().models.mobilenet_v3_small())
        """,
        env,
    )
    assert guarded.stdout.strip() == "a model", guarded.stderr


@pytest.mark.slow  # imports transformers' BERT (several seconds)
def test_a_broken_torchvision_does_not_stop_transformers(tmp_path) -> None:
    """Without the guard, ``from transformers import BertModel`` fails in this environment:
    transformers imports torchvision whenever it finds one."""
    pytest.importorskip("transformers")
    error = 'OSError("libcudart.so.13: cannot open shared object")'
    env = _fake_torchvision(tmp_path, error, anywhere=True)
    guarded = _python(
        """
        from workbench.loaders.thirdparty import transformers
        transformers()
        from transformers import BertConfig, BertModel
        print(BertModel.__name__)
        """,
        env,
    )
    assert guarded.stdout.strip() == "BertModel", guarded.stderr[-2000:]
