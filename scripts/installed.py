"""Whether a project folder is installed as setup.sh would install it; what is missing if not.

    python scripts/installed.py PROJECT_DIR [EXTRAS] [--editable] [--stamp]

Exit 0 when the project's distribution is installed from PROJECT_DIR (editable with
``--editable``), every requirement of it and of EXTRAS (comma-separated) is installed at a
version it allows (one level down: the extras a requirement asks for count too), and, with
``--stamp``, the folder's files are those installed last time (a non-editable install copies
them, so a change needs a reinstall). Otherwise exit 1 with one line per problem.
``--record`` stores the folder's stamp after an install. ``--forget NAME`` uninstalls
distribution NAME when it is installed from PROJECT_DIR (an old name of the project).

Only the standard library and ``packaging`` (pip's own copy when not installed) are used, and
nothing is imported from the project: it runs in well under a second, so that a second run of
setup.sh takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip vendors it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

#: folders a stamp leaves out: build and tool output, not the project's files
_SKIP = {"node_modules", "__pycache__", "build", "dist", ".mypy_cache", ".ruff_cache"}


def _stamp_file(project: Path) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(project).encode()).hexdigest()[:16]
    return cache / "workbench" / "setup" / f"{project.name}-{key}.sha256"


def _stamp(project: Path) -> str:
    """A hash of the folder's files (names and contents)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(root, name)
            digest.update(str(path.relative_to(project)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _origin(dist: metadata.Distribution) -> tuple[str | None, bool]:
    """The folder URL a distribution was installed from, and whether it is editable."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None, False
    info = json.loads(text)
    return info.get("url"), bool(info.get("dir_info", {}).get("editable"))


def _unmet(requirements: list[str], extras: set[str]) -> list[str]:
    """Requirements (with the project's ``extras``) not installed at an allowed version."""
    problems = []
    for text in requirements:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{req} (installed {dist.version})")
            continue
        if req.extras:  # dask[distributed]: what the extra adds, one level down
            wanted = set(req.extras)
            inner = [r for r in dist.requires or [] if Requirement(r).marker is not None]
            problems += _unmet([r for r in inner if _for_extra(r, wanted)], wanted)
    return problems


def _for_extra(text: str, extras: set[str]) -> bool:
    marker = Requirement(text).marker
    return marker is not None and any(marker.evaluate({"extra": e}) for e in extras)


def check(project: Path, extras: set[str], editable: bool, stamped: bool) -> list[str]:
    """What is wrong with ``project``'s installation (empty: nothing)."""
    spec = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    name = spec["name"]
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return [f"{name} is not installed"]
    url, is_editable = _origin(dist)
    if url != project.as_uri() or (editable and not is_editable):
        return [f"{name} is installed from {url or 'an index'}, not from {project}"]
    if canonicalize_name(dist.metadata["Name"]) != canonicalize_name(name):
        return [f"{name} is installed under the name {dist.metadata['Name']}"]
    if dist.version != spec["version"]:
        return [f"{name} {dist.version} is installed; the folder holds {spec['version']}"]
    problems = []
    if stamped:
        stamp = _stamp_file(project)
        if not stamp.is_file() or stamp.read_text() != _stamp(project):
            problems.append(f"{project} changed since it was installed")
    optional = spec.get("optional-dependencies", {})
    requirements = list(spec.get("dependencies", []))
    pending, done = set(extras), set()
    while pending:  # an extra may ask for others of the project ("name[trees]")
        extra = pending.pop()
        done.add(extra)
        for text in optional.get(extra, []):
            req = Requirement(text)
            if canonicalize_name(req.name) == canonicalize_name(name):
                pending |= set(req.extras) - done
            else:
                requirements.append(text)
    # the installed metadata must list what pyproject lists (entry points and all come along)
    installed = {canonicalize_name(Requirement(r).name) for r in dist.requires or []}
    declared = {canonicalize_name(Requirement(r).name) for r in requirements}
    if declared - installed:
        problems.append(f"{name}'s installed metadata lacks {sorted(declared - installed)}")
    return problems + _unmet(requirements, done)


def forget(project: Path, name: str) -> None:
    """Uninstall distribution ``name`` if it was installed from ``project``."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return
    if _origin(dist)[0] == project.as_uri():
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-y", "-q", name],
            check=True,
        )
        print(f"uninstalled {name}, this project's former distribution name")


def main(argv: list[str]) -> int:
    flags = {a for a in argv if a.startswith("--")}
    args = [a for a in argv if not a.startswith("--")]
    project = Path(args[0]).resolve()
    if "--forget" in flags:
        forget(project, args[1])
        return 0
    if "--record" in flags:
        stamp = _stamp_file(project)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(_stamp(project))
        return 0
    extras = {e for e in (args[1] if len(args) > 1 else "").split(",") if e}
    problems = check(project, extras, "--editable" in flags, "--stamp" in flags)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
