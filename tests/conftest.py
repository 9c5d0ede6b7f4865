"""pytest configuration for the GVThread suite.

- `stress` tests are opt-in: they run only with `--run-stress` or a `-m` expression that
  selects `stress` (e.g. `pytest -m stress tests/stress`).
- Fixtures `rt` (2 workers) and `rt1` (1 worker) give a Runtime that is shut down after
  the test; `flag` gives a threading.Event that is set before that runtime shuts down, so
  helper GVThreads spinning on it always finish.
"""

import os
import sys
import threading

import pytest

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    # so test modules can `import gvtest_support` whatever pytest's import mode is
    sys.path.insert(0, _TESTS_DIR)


def pytest_addoption(parser):
    parser.addoption("--run-stress", action="store_true", default=False,
                     help="run tests marked @pytest.mark.stress (slow, memory-hungry)")


def pytest_configure(config):
    # Registered here as well as in pyproject.toml, so the suite works with either alone.
    config.addinivalue_line("markers", "stress: slow, memory-hungry test; opt-in (--run-stress or -m stress)")
    config.addinivalue_line("markers", "bench: benchmark; opt-in")
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): per-test timeout (pytest-timeout)")


def _stress_selected(config):
    if config.getoption("--run-stress"):
        return True
    expr = config.getoption("-m") or ""
    return "stress" in expr and "not stress" not in expr


def pytest_collection_modifyitems(config, items):
    if _stress_selected(config):
        return
    skip = pytest.mark.skip(reason="stress test: opt in with --run-stress or -m stress")
    for item in items:
        if "stress" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def _flags():
    """Events registered by `flag`/`make_flag`; all set at teardown."""
    evs = []
    yield evs
    for ev in evs:
        ev.set()


@pytest.fixture
def make_flag(_flags):
    def make():
        ev = threading.Event()
        _flags.append(ev)
        return ev
    return make


@pytest.fixture
def flag(make_flag):
    return make_flag()


def _runtime(_flags, **kw):
    from gvthread import Runtime

    with Runtime(**kw) as rt:
        try:
            yield rt
        finally:
            # release every helper GVThread before leaving the block (which waits for them)
            for ev in _flags:
                ev.set()


@pytest.fixture
def rt(_flags):
    """A Runtime with 2 workers, shut down (waiting for its GVThreads) after the test."""
    yield from _runtime(_flags, workers=2)


@pytest.fixture
def rt1(_flags):
    """A Runtime with 1 worker: scheduling order is deterministic enough to assert on."""
    yield from _runtime(_flags, workers=1)
