"""Test tiers, enforced: a fixture that reaches a slow or external resource declares the marker its users need.

``make test-fast`` deselects the markers ``local`` (kfp.local runs), ``serving`` (HTTP servers),
``integration`` (PostgreSQL) and ``slow`` (session fixtures that train models, anything over a few
seconds). A marker that is forgotten would put such a test in the fast tier silently, so every
fixture that reaches one of those resources is declared with :func:`resource`, and a test that uses
it without the marker, directly or through other fixtures, fails collection with a message naming
the test, the fixture and the marker. The check runs on every collected test, before ``-m``
deselects any, so ``make test-fast`` fails on the mistake instead of running a slow test.

``tests/conftest.py`` imports the hook (so it is registered) and :func:`resource`; it is a module of
its own so that a test can load it into a ``pytester`` run (``-p tiers``) and show that the check fails.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import pytest

#: The markers ``make test-fast`` deselects, each naming what its tests reach.
TIER_MARKERS = ("local", "serving", "integration", "slow")
_ATTRIBUTE = "_shipyard_tier_markers"

F = TypeVar("F", bound=Callable[..., Any])


def resource(*markers: str, **fixture_kwargs: Any) -> Callable[[F], Any]:
    """``pytest.fixture`` for a fixture that reaches a resource: every test using it must carry ``markers``.

    Args:
        *markers: Tier markers (of :data:`TIER_MARKERS`) a test using this fixture must carry.
        **fixture_kwargs: Passed to ``pytest.fixture`` (``scope``, ``params``, ``name``...).

    Returns:
        A decorator that makes the function a fixture and records the markers it requires.

    Raises:
        ValueError: No marker, or one that is not a tier marker.
    """
    unknown = [m for m in markers if m not in TIER_MARKERS]
    if not markers or unknown:
        raise ValueError(f"resource() takes tier markers {TIER_MARKERS}, got {markers}")

    def decorate(func: F) -> Any:
        setattr(func, _ATTRIBUTE, tuple(markers))
        return pytest.fixture(**fixture_kwargs)(func)

    return decorate


def _definitions(item: pytest.Item, name: str) -> Iterator[Any]:
    """The FixtureDefs ``item`` uses for fixture ``name``: the closest, and those it overrides and requests."""
    info = getattr(item, "_fixtureinfo", None)
    defs = list(info.name2fixturedefs.get(name, ())) if info is not None else []
    while defs:
        definition = defs.pop()
        yield definition
        if name not in definition.argnames:  # an override that does not request the fixture it overrides
            break


def missing_markers(item: pytest.Item) -> list[tuple[str, str]]:
    """``(fixture, marker)`` for every marker a fixture of ``item`` requires and ``item`` lacks."""
    have = {mark.name for mark in item.iter_markers()}
    missing = []
    for name in getattr(item, "fixturenames", ()):  # the closure: fixtures of fixtures included
        for definition in _definitions(item, name):
            for marker in getattr(definition.func, _ATTRIBUTE, ()):
                if marker not in have and (name, marker) not in missing:
                    missing.append((name, marker))
    return missing


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Turns the collection of a module (or class) into an error when one of its tests lacks a tier marker."""
    report = yield
    if report.passed:
        problems: list[str] = []
        for item in report.result:
            if not isinstance(item, pytest.Item):
                continue
            test = item.nodeid.split("[", 1)[0]  # one line for all parameters of a test
            for fixture, marker in missing_markers(item):
                line = (
                    f"{test}: uses fixture {fixture!r}, which needs the marker {marker!r}; "
                    f"add @pytest.mark.{marker} to the test (or pytestmark to its module)"
                )
                if line not in problems:
                    problems.append(line)
        if problems:
            report.outcome = "failed"
            report.longrepr = "tier markers missing (see tests/tiers.py):\n" + "\n".join(problems)
            report.result = []
    return report
