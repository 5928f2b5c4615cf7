"""One way for every benchmark to end: its targets, each `met` or `MISSED`.

A module builds a `Target` per threshold it judges and calls `report()` last; the
lines it prints look alike in every module, and `bench/__main__.py` collects what was
reported (`take_reported()`) for its summary. No `main()` here: not a benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # the threshold itself, e.g. "fan-out p99 <= 250 ms"
    figure: str  # what was measured, e.g. "212 ms"
    ok: bool


_reported: list[Target] = []


def report(targets: Iterable[Target]) -> bool:
    """Print `  <name>: <figure> ... met|MISSED` per target; True if every one was met."""
    judged = list(targets)
    print("targets:")
    for t in judged:
        print(f"  {t.name}: {t.figure} ... {'met' if t.ok else 'MISSED'}")
    _reported.extend(judged)
    return all(t.ok for t in judged)


def exit_status(met: bool) -> int:
    """A module's `main()` return value: nonzero when a target was missed."""
    return 0 if met else 1


def take_reported() -> list[Target]:
    """The targets reported since the last call, forgotten here."""
    taken = list(_reported)
    _reported.clear()
    return taken
