"""Fixtures that start real processes; a failing test's report carries their logs."""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import pytest

# The suite imports its helpers as ``tests.support``; the repository root must be importable
# whichever way pytest was started (``pytest`` alone does not put it on sys.path).
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.netlab import Lab, built_lab  # noqa: E402
from tests.support.node import Harness, Process  # noqa: E402

HARNESS = pytest.StashKey[Harness]()


def pytest_configure(config: pytest.Config) -> None:
    """The suite tests the installed package (compiled as a user gets it): it must be this
    checkout's code, not an install from before the last edit."""
    import ninelives

    installed = Path(ninelives.__file__).resolve().parent
    source = Path(_ROOT) / "src" / "ninelives"
    if installed == source:
        return  # an editable install runs the source itself
    stale = [
        str(path.relative_to(source)) for path in sorted(source.rglob("*.py"))
        if not (installed / path.relative_to(source)).is_file()
        or (installed / path.relative_to(source)).read_bytes() != path.read_bytes()
    ]
    if stale:
        pytest.exit(f"the installed ninelives ({installed}) is not this checkout's src/ "
                    f"({', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''} differ): "
                    f"run `make .venv/bin/.installed` first", returncode=4)
# Processes a test uses that its own harness did not start (a module's etcd, say).
SHARED_PROCESSES = pytest.StashKey[list[Process]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    harness = item.stash.get(HARNESS, None)
    if report.failed and harness is not None:
        for title, text in harness.log_sections():
            report.sections.append((title, text))
    if report.failed:
        for process in item.stash.get(SHARED_PROCESSES, []):
            report.sections.append((f"log of {process.label} (pid {process.pid})",
                                    process.log_tail()))
    return report


@pytest.fixture
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Generator[Harness, None, None]:
    """Start backends and nodes; all are stopped by pid when the test ends."""
    h = Harness(tmp_path)
    request.node.stash[HARNESS] = h
    try:
        yield h
    finally:
        h.stop_all()


@pytest.fixture
def lab() -> Generator[Lab, None, None]:
    """Namespaces on a bridge (tests/support/netlab.py), removed at the end, also on failure."""
    with built_lab() as made:
        yield made
