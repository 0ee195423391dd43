"""End-to-end fixtures: labs of Mininet hosts around Open vSwitch (mininet/lvslab.py).

Use a lab in a test module::

    pytestmark = pytest.mark.lab("nat")          # Lab("nat") with the director

    def test_something(lab):
        lab.apply_lvsadm()
        assert lab.curl("c1", f"http://{lab.vip}/") in lab.servers

``@pytest.mark.lab(topology, **Lab keyword arguments)`` says which lab the
``lab`` fixture gives; ``lab_factory(topology, **kwargs)`` starts one
directly (e.g. from a module-scoped, parametrized fixture).  Only one lab runs
at a time (one bridge name, one lock): a test that wants the running lab gets
it again, one that wants another stops it first, so keep tests of one lab
together.  The lab's state (flows, services) carries over between tests of a
module: clean up what a test adds, or ask for ``fresh=True``.

Without root, Open vSwitch or Mininet these tests are skipped with the reason;
with ``CI=true`` they fail instead.  A failing test gets the lab's dump (flows,
``ovs-vsctl show``, controller log, topology) as a report section.  Errors in
the controller log (tracebacks, OpenFlow errors, "error" lines) or OpenFlow
error replies in ovs-vswitchd's log during a test fail it; mark expected
ones with ``@pytest.mark.controller_log_ignore(regex, ...)``.
"""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# mininet/ has no __init__.py, so this never shadows the mininet library.
sys.path.insert(0, str(REPO / "mininet"))

import lvslab  # noqa: E402

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class _Labs:
    """The running lab (at most one) and the last one started, for reports."""

    current = None
    key = None
    last = None
    timings = []            # (topology, {phase: seconds}) per lab started


def pytest_configure(config):
    config.addinivalue_line("markers", "lab(topology, **kwargs): the lab the `lab` fixture gives")
    config.addinivalue_line("markers", "controller_log_ignore(*regex): expected controller "
                                       "log lines for this test")
    config.addinivalue_line("markers", "e2e: end-to-end tests on Mininet and Open vSwitch")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def lab_environment():
    """Skip (or with CI=true fail) when this machine cannot run a lab."""
    problem = lvslab.environment_problem()
    if problem:
        if CI:
            pytest.fail(f"CI=true, so this is an error, not a skip: {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def lab_factory(lab_environment):
    """``lab_factory(topology, fresh=False, **Lab kwargs)`` -> a running Lab.

    Returns the running lab when it was started with the same arguments
    (unless ``fresh``); otherwise stops it and starts the one asked for.
    """
    def factory(topology, fresh=False, **kwargs):
        key = (str(topology), sorted((k, repr(v)) for k, v in kwargs.items()))
        if _Labs.current is not None:
            if _Labs.key == key and _Labs.current.running and not fresh:
                return _Labs.current
            _stop_current()
        lab = lvslab.Lab(topology, **kwargs)
        _Labs.last = lab
        lab.start()
        _Labs.current, _Labs.key = lab, key
        _Labs.timings.append((lab.name, lab.timings))
        return lab

    yield factory
    _stop_current()


def _stop_current():
    lab, _Labs.current, _Labs.key = _Labs.current, None, None
    if lab is not None:
        lab.stop()


@pytest.fixture
def lab(request, lab_factory):
    """The lab named by ``@pytest.mark.lab(...)`` or by indirect parametrization."""
    if hasattr(request, "param"):
        param = request.param
        args, kwargs = ((param,), {}) if isinstance(param, str) else param
    else:
        marker = request.node.get_closest_marker("lab")
        if marker is None:
            pytest.fail("the lab fixture needs @pytest.mark.lab('<topology>', ...) "
                        "or indirect parametrization", pytrace=False)
        args, kwargs = marker.args, marker.kwargs
    return lab_factory(*args, **kwargs)


@pytest.fixture(autouse=True)
def _lab_logs_clean(request):
    """Fail a test during which the controller or the switch reported an error."""
    before = _Labs.current
    marks = before.log_marks() if before is not None else None
    yield
    lab = _Labs.current
    if lab is None or not lab.running:
        return
    if lab is not before:
        marks = None              # started during this test: check from its start
    ignore = [regex for m in request.node.iter_markers("controller_log_ignore")
              for regex in m.args]
    problems = lab.problems(marks, ignore)
    if problems:
        pytest.fail(f"lab {lab.name}: errors in the controller log or OpenFlow errors "
                    f"during this test ({lab.controller_log_path}):\n\n"
                    + "\n---\n".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        lab = _Labs.current if _Labs.current is not None else _Labs.last
        if lab is not None:
            dump = lab.dump() if lab.running else lab.failure_dump
            if dump:
                report.sections.append((f"lab {lab.name}: dump", dump))
    return report


def pytest_terminal_summary(terminalreporter):
    if not _Labs.timings:
        return
    terminalreporter.section("lab start/stop times")
    for name, timings in _Labs.timings:
        phases = " ".join(f"{k}={v:.2f}s" for k, v in timings.items()
                          if k not in ("start", "stop"))
        terminalreporter.line(f"{name}: start {timings.get('start', 0):.2f}s, "
                              f"stop {timings.get('stop', float('nan')):.2f}s ({phases})")
