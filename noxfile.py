"""Developer sessions: ``nox -s tests`` (what CI runs), ``lint``, ``typecheck``, ``docs``, ``build``,
``bench``, ``mutants``."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck", "build"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
#: The add-ons' distributions (their packages live in src/ beside the core's).
ADD_ONS = (
    "distributions/xtasks-fastapi",
    "distributions/xtasks-alerts",
    "distributions/xtasks-celery",
)
LINTED = ("src", "tests", "bench", "examples", "tools", "distributions", "noxfile.py")


def _install(session: nox.Session, *groups: str) -> None:
    """Install the core and the add-ons, editable, with every extra and the named groups.

    The add-ons are named as directories, so the extras that pull them (``.[all]``) resolve
    to this clone with pip too, not only with uv (which reads ``[tool.uv.sources]``).
    """
    editable = [arg for add_on in ADD_ONS for arg in ("-e", add_on)]
    session.install("-e", ".[all]", *editable, *(f"--group={g}" for g in groups))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Every test, on the asyncio and trio backends. In CI (CI=true) a skip is a failure."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and import order."""
    session.install("--group=lint", ".")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, tests and this file."""
    _install(session, "typecheck")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site, into ``site/``; any warning fails the build.

    ``nox -s docs -- serve`` previews it at http://127.0.0.1:8000 instead, rebuilt on save.
    """
    _install(session, "docs")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", *session.posargs[1:], env=env)
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs, env=env)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Every sdist and wheel (the core and each add-on) into ``dist/``, each one checked.

    The wheel is built from the sdist and must equal the one built from the tree; each holds
    only its package and metadata; ``twine check`` passes. ``tests/test_distributions.py``
    runs the same script, then installs the wheels into fresh virtual environments.
    """
    session.install("--group=build")
    session.run("python", "tools/build_dists.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """xtasks against raw asyncio/``call_at``, APScheduler 3 and 4 and taskiq; ratios to the limit.

    ``nox -s bench -- --quick --markdown --json bench.json`` for a short run with both outputs.
    APScheduler 4 (a pre-release; its import name clashes with 3.x) runs in its own venv,
    ``bench/.venv-apscheduler4``, made by the first run that needs it (network needed once).
    """
    _install(session, "bench")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def mutants(session: nox.Session) -> None:
    """Mutation testing of the planner, runtime/recorder, triggers and SQLite store.

    Each group's mutants run against its own test files; survivors print as
    ``file:line: change``. ``nox -s mutants -- planner`` picks groups; ``-- --all`` tests every
    mutant instead of a seeded sample within each group's time budget (~20 min in all).
    Not part of ``tests``: its result is a number we track (tests/EQUIVALENT_MUTANTS.md).
    """
    _install(session, "mutants")
    session.run("python", "tools/mutants.py", *session.posargs)
