"""Build every distribution of this repository and check what each one ships.

``python tools/build_dists.py [--out DIR]`` (what ``nox -s build`` runs; the fresh-venv tests in
``tests/test_distributions.py`` run it too, so CI checks the same artifacts). Into ``DIR``
(default ``dist/``, emptied first) go one sdist and one wheel per distribution: ``xtasks`` (the
core, this directory) and the add-ons ``xtasks-fastapi``, ``xtasks-alerts`` and
``xtasks-celery`` (``distributions/<name>/``, their packages in ``src/``). For each:

1. ``uv build`` makes the sdist, then the wheel *from the sdist*: an sdist that cannot build
   on its own fails here;
2. a second wheel, built straight from the source tree, must hold the same files with the
   same bytes as the first;
3. the wheel holds exactly the package's files (``py.typed`` among them) and its
   ``.dist-info``; the sdist holds the package, ``pyproject.toml``, the README and the build
   hook, nothing from ``tests/``, ``docs/``, ``bench/``, ``tools/`` or ``examples/``;
4. the entry points and the add-ons' requirement on the core are the expected ones;
5. ``twine check --strict`` passes on every artifact (metadata, README rendering).

Every problem is printed as ``artifact: problem``; the exit status is 1 if there was any.
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import email.parser
import functools
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
CORE_RANGE_PROBES = ("0.1.0", "0.1.99")  # the add-ons accept these core versions...
CORE_RANGE_EXCLUDES = ("0.0.9", "0.2.0")  # ...and refuse these


@dataclasses.dataclass(frozen=True)
class Distribution:
    """One distribution: its project directory, its one package, what it must declare."""

    name: str
    project: Path
    package: str
    entry_points: dict[str, dict[str, str]]
    requires: tuple[str, ...]  # the names of its dependencies (extras aside)

    @property
    def add_on(self) -> bool:
        return self.project != ROOT

    @property
    def stem(self) -> str:
        """The file-name prefix of its artifacts (``xtasks_fastapi-0.1.0``'s first part)."""
        return self.name.replace("-", "_")


DISTRIBUTIONS = (
    Distribution(
        "xtasks",
        ROOT,
        "xtasks",
        {"console_scripts": {"xtasks": "xtasks.cli:main"}},
        ("anyio", "croniter", "pluggy", "pydantic", "pyyaml"),
    ),
    Distribution(
        "xtasks-fastapi",
        ROOT / "distributions" / "xtasks-fastapi",
        "xtasks_fastapi",
        {},
        ("xtasks", "fastapi", "uvicorn"),
    ),
    Distribution(
        "xtasks-alerts",
        ROOT / "distributions" / "xtasks-alerts",
        "xtasks_alerts",
        {"xtasks": {"alerts": "xtasks_alerts._plugin"}},
        ("xtasks", "httpx", "aiosmtplib"),
    ),
    Distribution(
        "xtasks-celery",
        ROOT / "distributions" / "xtasks-celery",
        "xtasks_celery",
        {},
        ("xtasks", "celery", "redis"),
    ),
)

#: The core's extras that pull an add-on (the others only add third-party libraries).
CORE_EXTRAS = {"fastapi": "xtasks-fastapi", "alerts": "xtasks-alerts", "celery": "xtasks-celery"}


@functools.cache
def uv_binary() -> str:
    """The ``uv`` of this environment (the ``uv`` package of the ``build`` group), else PATH's."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found is None:
            raise SystemExit("tools/build_dists.py needs uv: pip install uv") from None
        return found
    return str(find_uv_bin())


def _uv_build(project: Path | str, out: Path, *options: str) -> None:
    command = [uv_binary(), "build", "--quiet", "--out-dir", str(out), *options, str(project)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


def package_files(dist: Distribution) -> set[str]:
    """The files its wheel must hold besides ``.dist-info``: the package as it is in src/,
    without what git ignores there (a stray ``*.db``) nor what looks like a test."""
    base = SRC / dist.package
    ignored = _git_ignored(base)
    return {
        f"{dist.package}/{path.relative_to(base).as_posix()}"
        for path in base.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and path not in ignored
        and not _looks_like_a_test(path.relative_to(base))
    }


def _git_ignored(base: Path) -> set[Path]:
    """The files under ``base`` that git ignores (none outside a git checkout)."""
    command = ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "-z", "--"]
    try:
        done = subprocess.run(
            [*command, str(base)], cwd=ROOT, capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.CalledProcessError):
        return set()
    return {(ROOT / name).resolve() for name in done.stdout.decode().split("\0") if name}


def _looks_like_a_test(relative: Path) -> bool:
    name = relative.name
    return bool(
        {"tests", "test"} & set(relative.parts[:-1])
        or name == "conftest.py"
        or (name.startswith("test_") and name.endswith(".py"))
    )


def _wheel_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as wheel:
        return {name: wheel.read(name) for name in wheel.namelist()}


def _sdist_members(path: Path) -> set[str]:
    with tarfile.open(path) as sdist:
        return {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()}


def check_wheel(dist: Distribution, wheel: Path) -> list[str]:
    """What is wrong with this wheel's files, entry points and requirements."""
    problems: list[str] = []
    members = _wheel_members(wheel)
    info = next((n.split("/")[0] for n in members if ".dist-info/" in n), "")
    shipped = {n for n in members if not n.startswith(f"{info}/")}
    expected = package_files(dist)
    problems += [f"missing {n}" for n in sorted(expected - shipped)]
    problems += [
        f"ships {n}, which is not the package's (tests and files git ignores stay out)"
        for n in sorted(shipped - expected)
    ]
    if f"{dist.package}/py.typed" not in shipped:
        problems.append(f"no {dist.package}/py.typed")
    entry_points = configparser.ConfigParser(delimiters=("=",))
    entry_points.optionxform = str  # type: ignore[assignment,method-assign]
    entry_points.read_string(members.get(f"{info}/entry_points.txt", b"").decode())
    found = {group: dict(entry_points[group]) for group in entry_points.sections()}
    if found != dist.entry_points:
        problems.append(f"entry points {found}, expected {dist.entry_points}")
    metadata = email.parser.BytesParser().parsebytes(members[f"{info}/METADATA"])
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    plain = sorted(r.name for r in requirements if r.marker is None)
    if plain != sorted(dist.requires):
        problems.append(f"requires {plain}, expected {sorted(dist.requires)}")
    for requirement in requirements:
        if requirement.name.startswith("xtasks"):
            problems += _check_internal_requirement(dist, requirement)
    return [f"{wheel.name}: {p}" for p in problems]


def _check_internal_requirement(dist: Distribution, requirement: Requirement) -> list[str]:
    """An add-on needs a compatible core; the core's extras pull the add-ons, same range."""
    accepted = all(requirement.specifier.contains(Version(v)) for v in CORE_RANGE_PROBES)
    refused = not any(requirement.specifier.contains(Version(v)) for v in CORE_RANGE_EXCLUDES)
    problems = [] if accepted and refused else [f"{requirement} is not the range >=0.1,<0.2"]
    if dist.add_on and requirement.name != "xtasks":
        problems.append(f"an add-on requires another add-on: {requirement}")
    if not dist.add_on:  # under its own extra and `all`, nowhere else
        wanted = {e for e, name in CORE_EXTRAS.items() if name == requirement.name} | {"all"}
        marker = requirement.marker
        extras = {e for e in [*CORE_EXTRAS, "all", ""] if marker and marker.evaluate({"extra": e})}
        if extras and extras - wanted:
            problems.append(f"{requirement}: expected under the extras {sorted(wanted)} only")
    return problems


def check_sdist(dist: Distribution, sdist: Path) -> list[str]:
    """The sdist holds the package and the project files, nothing a developer alone needs."""
    members = _sdist_members(sdist)
    allowed = {"PKG-INFO", "pyproject.toml", "README.md", ".gitignore"}
    if dist.add_on:
        allowed.add("hatch_build.py")
    expected = {f"src/{n}" for n in package_files(dist)}
    problems = [f"missing {n}" for n in sorted(expected - members)]
    problems += [f"ships {n}" for n in sorted(members - expected - allowed)]
    return [f"{sdist.name}: {p}" for p in problems]


def compare_wheels(from_sdist: Path, from_tree: Path) -> list[str]:
    """The wheel built from the sdist has the same files, byte for byte, as the tree's."""
    a, b = _wheel_members(from_sdist), _wheel_members(from_tree)
    differ = sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))
    return [f"{from_sdist.name}: built from the sdist, differs from the tree's in {differ}"] * bool(
        differ
    )


def twine_check(artifacts: list[Path]) -> list[str]:
    command = [sys.executable, "-m", "twine", "check", "--strict", *map(str, artifacts)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return [] if done.returncode == 0 else [f"twine check: {done.stdout}{done.stderr}".strip()]


def build_all(out: Path) -> tuple[list[Path], list[str]]:
    """Build every distribution into ``out`` (emptied first): its artifacts, and the problems."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    artifacts: list[Path] = []
    problems: list[str] = []
    uv_binary()  # found once, before the threads (sysconfig's first use is not thread-safe)
    with tempfile.TemporaryDirectory(prefix="xtasks-tree-wheels-") as scratch:

        def build(dist: Distribution) -> tuple[list[Path], list[str]]:
            own = Path(scratch) / dist.name  # one directory each: builds run side by side
            _uv_build(dist.project, own / "sdist")  # the sdist, then the wheel from the sdist
            _uv_build(dist.project, own / "tree", "--wheel")
            [sdist] = (own / "sdist").glob("*.tar.gz")
            [wheel] = (own / "sdist").glob("*.whl")
            [tree_wheel] = (own / "tree").glob("*.whl")
            found = check_sdist(dist, sdist) + check_wheel(dist, wheel)
            found += compare_wheels(wheel, tree_wheel)
            return [Path(shutil.move(a, out / a.name)) for a in (sdist, wheel)], found

        with ThreadPoolExecutor(max_workers=len(DISTRIBUTIONS)) as pool:
            for built, found in pool.map(build, DISTRIBUTIONS):
                artifacts += built
                problems += found
    problems += twine_check(artifacts)
    return artifacts, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="default: dist/")
    args = parser.parse_args(argv)
    artifacts, problems = build_all(args.out.resolve())
    for artifact in artifacts:
        if artifact.suffix == ".whl":
            files = [n for n in _wheel_members(artifact) if ".dist-info/" not in n]
        else:
            files = sorted(_sdist_members(artifact))
        print(f"{artifact}: {len(files)} files")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(
            f"{len(artifacts)} artifacts, all checked: each wheel built from its sdist equals "
            "the tree's; files, entry points, requirements and twine check as expected"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
