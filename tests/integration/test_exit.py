"""Interpreter exit with GVThreads still parked never crashes (50 subprocess runs)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from gvtest_support import describe, run_script

PARALLEL = 4
RUN_TIMEOUT = 60


def _bad(res):
    if res.timed_out:
        return "timed out (exit hung)"
    if res.returncode != 0:
        return f"exit code {res.returncode}"
    if "Fatal Python error" in res.stderr:
        return "Fatal Python error"
    if "Traceback" in res.stderr or "Exception ignored" in res.stderr:
        return "exception printed at exit"
    if "exiting" not in res.stdout:
        return "script did not reach its end"
    return None


def exit_runs(runs, where):
    with ThreadPoolExecutor(PARALLEL) as ex:
        results = list(ex.map(
            lambda v: run_script("exit_parked.py", v, where, timeout=RUN_TIMEOUT), range(runs)))
    failures = [(v, why, res) for v, res in enumerate(results) if (why := _bad(res))]
    msg = f"{len(failures)}/{runs} runs failed\n" + "\n\n".join(
        f"### variant {v}: {why}\n{describe(res, tail=2000)}" for v, why, res in failures[:3])
    assert not failures, msg


@pytest.mark.timeout(600)
def test_exit_with_parked_gvthreads_default_runtime_50_runs():
    exit_runs(50, "default")


@pytest.mark.timeout(300)
def test_exit_with_parked_gvthreads_unclosed_runtime():
    # a Runtime the program never shut down must be stopped safely at exit too
    exit_runs(10, "own")


@pytest.mark.timeout(300)
def test_exit_after_shutdown_nowait_with_parked_gvthreads():
    exit_runs(10, "shutdown-nowait")
