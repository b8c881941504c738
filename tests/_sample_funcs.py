"""Module-level sample callables that tests reference as ``"tests._sample_funcs:name"``."""

from __future__ import annotations

from typing import Any


async def async_job(x: int = 0) -> int:
    return x


def sync_job(a: int, b: int = 1, *, scale: int = 1) -> int:
    return (a + b) * scale


def cpu_job(n: int) -> int:
    return sum(range(n))


class Jobs:
    @staticmethod
    def static_job() -> str:
        return "static"

    @classmethod
    def class_job(cls) -> str:
        return cls.__name__


class AsyncCallable:
    async def __call__(self, value: Any = None) -> Any:
        return value


class SyncCallable:
    def __call__(self) -> str:
        return "called"


NOT_CALLABLE = 42


def current_pid() -> int:
    """Runs in a worker process under mode="process"."""
    import os

    return os.getpid()


def exits() -> None:
    """Ends its process, if nothing stops it: what a process task must not do to others."""
    raise SystemExit(5)
