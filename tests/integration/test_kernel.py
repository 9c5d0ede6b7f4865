"""gvkernel as a real subprocess, driven by jupyter_client's BlockingKernelClient.

One kernel is shared by the tests of this module that do not disturb each other (the
`kernel` fixture); restart, shutdown and --max-gvthreads get kernels of their own.
Every kernel runs with --workers 2 and its history in a tmp directory (never the
user's home), and is killed at teardown.
"""

import shutil
import subprocess
import sys
import time

import pytest

from kernel_util import KernelProc, by_type, gv_meta, is_idle, kernel_env, stream_text

pytestmark = pytest.mark.timeout(120)

#: The issue's bounds.
INTERRUPT_LIMIT = 1.0
GV_LIMIT = 0.2
#: How quickly a kernel that went through something nasty must answer kernel_info.
ALIVE_LIMIT = 5.0


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = KernelProc(tmp_path_factory.mktemp("gvkernel"))
    try:
        yield k
    finally:
        k.stop()
    assert_clean_log(k)


def assert_clean_log(k):
    """Nothing the tests do is a kernel bug: no handler may have logged a traceback."""
    log = k.log()
    assert "Traceback" not in log and " ERROR " not in log, log


def assert_alive(k, limit=ALIVE_LIMIT):
    content, dt = k.kernel_info(timeout=limit + 5)
    assert content["status"] == "ok"
    assert dt < limit, f"kernel_info took {dt:.2f} s"
    return dt


def result_text(msgs):
    res = by_type(msgs, "execute_result")
    assert len(res) == 1, [m["msg_type"] for m in msgs]
    return res[0]["content"]["data"]["text/plain"]


def wait_started(k, msg_id, word="go", timeout=20):
    """Wait until the cell msg_id printed `word` (it is then inside its loop)."""
    k.iopub_collect(lambda m: (m["parent_header"].get("msg_id") == msg_id
                               and m["msg_type"] == "stream" and word in m["content"]["text"]),
                    lambda out: bool(out), timeout)


def exit_event(k, gid, timeout=20):
    """The iopub message that reports the end of background GVThread gid (looking at
    messages already read too: a quick one ends before its request goes idle)."""
    return k.iopub_collect(lambda m: gv_meta(m).get("id") == gid
                           and gv_meta(m).get("event") == "exit",
                           lambda out: bool(out), timeout, replay=True)[0]


# -- kernel_info, execute and its iopub messages --------------------------------------

def test_kernel_info(kernel):
    content, _ = kernel.kernel_info()
    assert content["status"] == "ok"
    assert content["protocol_version"].split(".")[0] == "5"
    assert tuple(int(x) for x in content["protocol_version"].split(".")[:2]) >= (5, 3)
    assert content["implementation"] == "gvkernel"
    li = content["language_info"]
    assert li["name"] == "python"
    assert li["file_extension"] == ".py"
    assert li["mimetype"] == "text/x-python"
    assert li["version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    assert content["gvthread"]["workers"] == 2


def test_execute_streams_result_and_status(kernel):
    code = "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\n6 * 7"
    msg_id = kernel.kc.execute(code)
    reply = kernel.shell_reply(msg_id)
    msgs = kernel.iopub_until_idle(msg_id)
    assert reply["content"]["status"] == "ok"
    kinds = [m["msg_type"] for m in msgs]
    assert kinds[0] == "status" and msgs[0]["content"]["execution_state"] == "busy"
    assert is_idle(msgs[-1])
    assert kinds.index("execute_input") < kinds.index("execute_result")
    inp = by_type(msgs, "execute_input")[0]["content"]
    assert inp["code"] == code
    assert inp["execution_count"] == reply["content"]["execution_count"]
    assert stream_text(msgs, "stdout") == "to out\n"
    assert stream_text(msgs, "stderr") == "to err\n"
    res = by_type(msgs, "execute_result")[0]["content"]
    assert res["data"]["text/plain"] == "42"
    assert res["execution_count"] == reply["content"]["execution_count"]
    assert all(m["parent_header"]["msg_id"] == msg_id for m in msgs)


def test_display_builtin_and_repr_html(kernel):
    code = ("class Rich:\n"
            "    def _repr_html_(self):\n"
            "        return '<b>rich</b>'\n"
            "    def __repr__(self):\n"
            "        return 'Rich()'\n"
            "display({'a': 1})\n"
            "display(Rich())\n"
            "Rich()")
    _, msgs = kernel.execute_ok(code)
    disp = by_type(msgs, "display_data")
    assert len(disp) == 2
    assert disp[0]["content"]["data"]["text/plain"] == "{'a': 1}"
    assert disp[1]["content"]["data"]["text/html"] == "<b>rich</b>"
    assert disp[1]["content"]["data"]["text/plain"] == "Rich()"
    res = by_type(msgs, "execute_result")[0]["content"]["data"]
    assert res["text/html"] == "<b>rich</b>"


def test_error_reply_and_iopub_error(kernel):
    reply, msgs = kernel.execute("def boom():\n    return 1 / 0\nboom()")
    c = reply["content"]
    assert c["status"] == "error"
    assert c["ename"] == "ZeroDivisionError"
    assert c["evalue"] == "division by zero"
    tb = "\n".join(c["traceback"])
    assert "boom" in tb and "ZeroDivisionError" in tb
    assert "gvkernel" not in tb and "kernel.py" not in tb  # the kernel's frames are hidden
    err = by_type(msgs, "error")
    assert len(err) == 1 and err[0]["content"]["ename"] == "ZeroDivisionError"
    assert err[0]["content"]["traceback"]


def test_execution_count_increments_and_silent(kernel):
    r1, _ = kernel.execute_ok("1")
    r2, _ = kernel.execute_ok("2")
    n = r1["content"]["execution_count"]
    assert r2["content"]["execution_count"] == n + 1
    reply, msgs = kernel.execute("print('quiet'); 3", silent=True)
    assert reply["content"]["status"] == "ok"
    kinds = {m["msg_type"] for m in msgs}
    assert "execute_input" not in kinds
    assert "execute_result" not in kinds
    r3, _ = kernel.execute_ok("4")
    assert r3["content"]["execution_count"] == n + 2  # silent did not count


def test_user_expressions(kernel):
    reply, _ = kernel.execute_ok("ue_value = 20", user_expressions={
        "double": "ue_value * 2", "bad": "1 / 0", "missing": "no_such_name_ue"})
    ue = reply["content"]["user_expressions"]
    assert ue["double"]["status"] == "ok"
    assert ue["double"]["data"]["text/plain"] == "40"
    assert ue["bad"]["status"] == "error" and ue["bad"]["ename"] == "ZeroDivisionError"
    assert ue["missing"]["status"] == "error" and ue["missing"]["ename"] == "NameError"


def test_input_with_stdin(kernel):
    msg_id = kernel.kc.execute("answer = input('name? ')\nanswer.upper()", allow_stdin=True)
    req = kernel.kc.get_stdin_msg(timeout=20)
    assert req["msg_type"] == "input_request"
    assert req["content"]["prompt"] == "name? "
    assert req["content"]["password"] is False
    assert req["parent_header"]["msg_id"] == msg_id
    kernel.kc.input("gvthread")
    reply = kernel.shell_reply(msg_id)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert result_text(kernel.iopub_until_idle(msg_id)) == "'GVTHREAD'"


def test_interrupt_while_waiting_for_input(kernel):
    msg_id = kernel.kc.execute("input('never answered? ')", allow_stdin=True)
    req = kernel.kc.get_stdin_msg(timeout=20)
    assert req["content"]["prompt"] == "never answered? "
    t0 = time.perf_counter()
    kernel.request("interrupt_request")
    reply = kernel.shell_reply(msg_id)
    dt = time.perf_counter() - t0
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert dt < INTERRUPT_LIMIT
    kernel.iopub_until_idle(msg_id)
    # the next input() is asked and answered normally
    msg_id = kernel.kc.execute("input('again? ')", allow_stdin=True)
    req = kernel.kc.get_stdin_msg(timeout=20)
    assert req["content"]["prompt"] == "again? "
    kernel.kc.input("yes")
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"
    assert result_text(kernel.iopub_until_idle(msg_id)) == "'yes'"


def test_input_without_stdin_is_a_clear_error(kernel):
    t0 = time.monotonic()
    reply, _ = kernel.execute("input('name? ')", allow_stdin=False)
    assert time.monotonic() - t0 < 10
    c = reply["content"]
    assert c["status"] == "error"
    assert c["ename"] == "StdinNotImplementedError"
    assert "stdin" in c["evalue"]


# -- complete, inspect, is_complete -----------------------------------------------------

def test_complete(kernel):
    kernel.execute_ok("import os\nmy_unique_completion_name = 1")
    kc = kernel.kc
    r = kc.complete("x = my_unique_compl", 19, reply=True, timeout=20)["content"]
    assert r["status"] == "ok"
    assert r["matches"] == ["my_unique_completion_name"]
    assert (r["cursor_start"], r["cursor_end"]) == (4, 19)
    r = kc.complete("os.pa", 5, reply=True, timeout=20)["content"]
    assert "os.path" in r["matches"] and "os.pardir" in r["matches"]
    assert all(m.startswith("os.pa") for m in r["matches"])
    assert r["cursor_start"] == 0
    r = kc.complete("%gvs", 4, reply=True, timeout=20)["content"]
    assert {"%gvspawn", "%gvstack", "%gvstats"} <= set(r["matches"])
    assert all(m.startswith("%gvs") for m in r["matches"])


def test_inspect(kernel):
    kernel.execute_ok("def documented(a, b=2):\n    'Adds things up.'\n    return a + b")
    r = kernel.kc.inspect("documented(", 3, reply=True, timeout=20)["content"]
    assert r["status"] == "ok" and r["found"] is True
    text = r["data"]["text/plain"]
    assert "Adds things up." in text and "(a, b=2)" in text
    r = kernel.kc.inspect("len", 3, reply=True, timeout=20)["content"]
    assert r["found"] is True and "Return the number of items" in r["data"]["text/plain"]
    r = kernel.kc.inspect("no_such_name_anywhere", 5, reply=True, timeout=20)["content"]
    assert r["status"] == "ok" and r["found"] is False


def test_is_complete(kernel):
    def check(code):
        return kernel.shell_reply(kernel.kc.is_complete(code))["content"]

    assert check("x = 1")["status"] == "complete"
    r = check("for i in range(3):")
    assert r["status"] == "incomplete" and r["indent"] == "    "
    r = check("def f():\n    if x:")
    assert r["status"] == "incomplete" and r["indent"] == "        "
    assert check("1 +* 2")["status"] == "invalid"


# -- history ------------------------------------------------------------------------------

def test_history_tail_range_search(kernel):
    a, _ = kernel.execute_ok("hist_marker_a = 1")
    b, _ = kernel.execute_ok("hist_marker_b = 2")
    na, nb = a["content"]["execution_count"], b["content"]["execution_count"]
    kc = kernel.kc
    tail = kc.history(hist_access_type="tail", n=2, reply=True, timeout=20)["content"]
    assert tail["status"] == "ok"
    assert [(h[1], h[2]) for h in tail["history"]] == [(na, "hist_marker_a = 1"),
                                                        (nb, "hist_marker_b = 2")]
    session = tail["history"][0][0]
    rng = kc.history(hist_access_type="range", session=0, start=na, stop=nb + 1, raw=True,
                     output=False, reply=True, timeout=20)["content"]["history"]
    assert [tuple(h) for h in rng] == [(session, na, "hist_marker_a = 1"),
                                       (session, nb, "hist_marker_b = 2")]
    found = kc.history(hist_access_type="search", pattern="hist_marker_*", n=10, reply=True,
                       timeout=20)["content"]["history"]
    assert [h[2] for h in found] == ["hist_marker_a = 1", "hist_marker_b = 2"]
    none = kc.history(hist_access_type="search", pattern="no_such_line_*", reply=True,
                      timeout=20)["content"]["history"]
    assert none == []


# -- interrupt ------------------------------------------------------------------------------

def _interrupt_latency(k, code):
    msg_id = k.kc.execute(code)
    wait_started(k, msg_id)
    time.sleep(0.2)  # well inside the loop / the sleep
    t0 = time.perf_counter()
    k.request("interrupt_request")
    reply = k.shell_reply(msg_id, timeout=20)
    dt = time.perf_counter() - t0
    k.iopub_until_idle(msg_id)
    return reply["content"], dt


def test_interrupt_busy_loop(kernel):
    c, dt = _interrupt_latency(kernel, "print('go')\nwhile True:\n    pass")
    print(f"interrupt of a busy loop: execute_reply after {dt * 1e3:.1f} ms")
    assert c["status"] == "error" and c["ename"] == "KeyboardInterrupt"
    assert dt < INTERRUPT_LIMIT, f"execute_reply {dt:.3f} s after the interrupt"
    assert_alive(kernel)


def test_interrupt_sleep(kernel):
    c, dt = _interrupt_latency(kernel, "import time\nprint('go')\ntime.sleep(30)")
    print(f"interrupt of time.sleep(30): execute_reply after {dt * 1e3:.1f} ms")
    assert c["status"] == "error" and c["ename"] == "KeyboardInterrupt"
    assert dt < INTERRUPT_LIMIT, f"execute_reply {dt:.3f} s after the interrupt"


#: Endless loops that loop only inside a comprehension or a generator expression: no
#: `for`/`while` statement holds a safepoint, gvthread.compile's per-clause check does.
ENDLESS_CELLS = {
    "list comprehension": "[x for x in iter(int, 1)]",
    "generator expression": "list(x for x in iter(int, 1))",
    "sum of a generator expression": "sum(x for x in iter(int, 1))",
    "assigned in a function": "def f():\n    return [x for x in iter(int, 1)]\nxs = f()",
}
#: The issue asks for < 1 s (measured: a few ms); the test's bound is wider so that a
#: loaded 2-core CI box does not fail it, and still catches a loop that never stops.
ENDLESS_LIMIT = 5.0


@pytest.mark.parametrize("name", sorted(ENDLESS_CELLS))
def test_interrupt_endless_comprehension(kernel, name):
    c, dt = _interrupt_latency(kernel, "print('go')\n" + ENDLESS_CELLS[name])
    print(f"interrupt of an endless {name}: execute_reply after {dt * 1e3:.1f} ms")
    assert c["status"] == "error" and c["ename"] == "KeyboardInterrupt", c
    assert dt < ENDLESS_LIMIT, f"execute_reply {dt:.3f} s after the interrupt"
    _, msgs = kernel.execute_ok("1 + 1")
    assert result_text(msgs) == "2"


def test_gvcancel_stops_an_endless_generator_expression_in_the_background(kernel):
    kernel.execute_ok("%%gvspawn --name bg-genexp\nsum(x for x in iter(int, 1))")
    listed, _ = kernel.call("gv_list_request", {"name": "bg-genexp"})
    (item,) = listed["content"]["items"]
    gid = item["id"]
    time.sleep(0.2)  # well inside the loop
    listed, _ = kernel.call("gv_list_request", {"name": "bg-genexp"})
    assert [i["state"] for i in listed["content"]["items"]] in (
        ["running"], ["ready"], ["preempted"])
    t0 = time.perf_counter()
    _, msgs = kernel.execute_ok(f"%gvcancel {gid}")
    assert stream_text(msgs, "stdout") == f"GVThread {gid}: cancelled\n"
    ev = exit_event(kernel, gid)
    dt = time.perf_counter() - t0
    print(f"%gvcancel of a background generator expression: exit after {dt * 1e3:.1f} ms")
    assert gv_meta(ev)["status"] == "cancelled"
    assert dt < ENDLESS_LIMIT
    listed, _ = kernel.call("gv_list_request", {"name": "bg-genexp"})
    assert listed["content"]["items"] == []
    _, msgs = kernel.execute_ok("1 + 1")
    assert result_text(msgs) == "2"


INLINE_TIMEOUT_CELL = """import gvthread, time
t0 = time.monotonic()
try:
    with gvthread.timeout(0.05):
        while True: pass
except TimeoutError as e:
    print(f"fired {time.monotonic() - t0:.4f} {e}")
"""


def test_inline_timeout_at_the_cells_top_level(kernel):
    _, msgs = kernel.execute_ok(INLINE_TIMEOUT_CELL, timeout=30)
    out = stream_text(msgs, "stdout")
    assert out.startswith("fired ") and out.endswith(" timed out after 0.05 s\n"), out
    took = float(out.split()[1])
    print(f"inline timeout(0.05) in a cell: fired after {took * 1e3:.1f} ms")
    assert 0.05 <= took < ENDLESS_LIMIT  # ~51 ms measured


def test_interrupt_busy_loop_in_an_imported_module(kernel, tmp_path):
    # the module is imported the ordinary way: no gvthread.compile safepoints in it (3.11:
    # a trace safepoint armed by native/pytrace.c; 3.12+: sys.monitoring)
    (tmp_path / "gv_cell_lib.py").write_text("def spin():\n    n = 0\n    while True:\n"
                                             "        n += 1\n")
    code = (f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport gv_cell_lib\n"
            "print('go')\ngv_cell_lib.spin()")
    c, dt = _interrupt_latency(kernel, code)
    print(f"interrupt of an imported module's loop: execute_reply after {dt * 1e3:.1f} ms")
    assert c["status"] == "error" and c["ename"] == "KeyboardInterrupt"
    assert dt < INTERRUPT_LIMIT, f"execute_reply {dt:.3f} s after the interrupt"
    assert_alive(kernel)


def test_interrupt_leaves_background_running_and_gvcancel_ends_it(kernel):
    reply, msgs = kernel.execute_ok(
        "bg_loop = %gvspawn --name bg-survivor while True: pass\nbg_loop.id")
    gid = int(result_text(msgs))
    c, dt = _interrupt_latency(kernel, "print('go')\nwhile True:\n    pass")
    assert c["ename"] == "KeyboardInterrupt"
    listed, _ = kernel.call("gv_list_request", {"name": "bg-survivor"})
    items = listed["content"]["items"]
    assert [i["id"] for i in items] == [gid]
    assert items[0]["state"] in ("running", "ready", "preempted")
    _, msgs = kernel.execute_ok(f"%gvcancel {gid}")
    assert stream_text(msgs, "stdout") == f"GVThread {gid}: cancelled\n"
    ev = exit_event(kernel, gid)
    assert gv_meta(ev)["status"] == "cancelled"
    listed, _ = kernel.call("gv_list_request", {"name": "bg-survivor"})
    assert listed["content"]["items"] == []


# -- background GVThreads ---------------------------------------------------------------------

def test_background_output_is_tagged_and_arrives_after_idle(kernel):
    code = ("import time\n"
            "bg = %gvspawn --name bg-printer for i in range(4): print('bg line', i); "
            "time.sleep(0.15)\n"
            "bg.id")
    msg_id = kernel.kc.execute(code)
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"

    def done(out):
        return any(gv_meta(m).get("event") == "exit" for m in out)

    msgs = kernel.iopub_collect(lambda m: m["parent_header"].get("msg_id") == msg_id, done)
    gid = int(result_text(msgs))
    idle_at = next(i for i, m in enumerate(msgs) if is_idle(m))
    after = msgs[idle_at + 1:]
    lines = [m for m in msgs if m["msg_type"] == "stream" and "bg line" in m["content"]["text"]]
    assert "".join(m["content"]["text"] for m in lines) == "".join(
        f"bg line {i}\n" for i in range(4))
    assert any(m in after for m in lines), "no background output after the request's idle"
    for m in lines:
        assert gv_meta(m)["id"] == gid
        assert m["parent_header"]["msg_id"] == msg_id
    ev = msgs[-1]
    assert ev in after
    gv = gv_meta(ev)
    assert gv["id"] == gid and gv["event"] == "exit" and gv["status"] == "ok"
    assert gv["result"] is None


def test_output_of_gvthreads_spawned_by_background_ones_goes_to_the_same_request(kernel):
    code = ("import gvthread, time\n"
            "%gvspawn --name parent-gv gvthread.spawn(lambda: (gvthread.sleep(0.5), "
            "print('from the child')), name='child-gv').join()\n")
    msg_id = kernel.kc.execute(code)
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"
    kernel.execute_ok("pass")  # a later request, before the child prints

    def done(out):
        return any("from the child" in m["content"].get("text", "") for m in out
                   if m["msg_type"] == "stream")

    msgs = kernel.iopub_collect(lambda m: m["parent_header"].get("msg_id") == msg_id, done)
    line = next(m for m in msgs if m["msg_type"] == "stream"
                and "from the child" in m["content"]["text"])
    assert gv_meta(line)["name"] == "child-gv"  # tagged with the child itself


def test_background_exit_events_ok_and_error(kernel):
    _, msgs = kernel.execute_ok("ok_h = %gvspawn 6 * 7\nerr_h = %gvspawn 1 / 0\n"
                                "(ok_h.id, err_h.id)")
    ok_id, err_id = eval(result_text(msgs))
    ok = gv_meta(exit_event(kernel, ok_id))
    assert ok["status"] == "ok" and ok["result"] == "42"
    ev = exit_event(kernel, err_id)
    err = gv_meta(ev)
    assert err["status"] == "error" and err["ename"] == "ZeroDivisionError"
    assert ev["msg_type"] == "stream" and ev["content"]["name"] == "stderr"
    assert "ZeroDivisionError" in ev["content"]["text"]


def test_display_in_background_is_tagged(kernel):
    _, msgs = kernel.execute_ok("h = %gvspawn display({'from': 'bg'})\nh.id")
    gid = int(result_text(msgs))
    exit_event(kernel, gid)
    disp = kernel.iopub_collect(lambda m: m["msg_type"] == "display_data"
                                and m["content"]["data"].get("text/plain") == "{'from': 'bg'}",
                                lambda out: bool(out), replay=True)
    assert gv_meta(disp[0])["id"] == gid


# -- gv_* requests -------------------------------------------------------------------------------

def test_gv_requests_fast_while_8_loops_run(kernel):
    ids = []
    worst = {}
    try:
        for i in range(8):
            channel = "control" if i % 2 else "shell"
            r, dt = kernel.call("gv_spawn_request",
                                {"code": "while True: pass", "name": f"spinner-{i}"},
                                channel=channel)
            worst[f"gv_spawn_request/{channel}"] = max(
                worst.get(f"gv_spawn_request/{channel}", 0.0), dt)
            assert r["content"]["status"] == "ok", r["content"]
            assert r["content"]["name"] == f"spinner-{i}"
            assert dt < GV_LIMIT, f"gv_spawn took {dt * 1e3:.1f} ms"
            ids.append(r["content"]["id"])
        time.sleep(0.3)  # let them all get going
        requests = [
            ("gv_list_request", {}),
            ("gv_list_request", {"name": "spinner-", "limit": 3}),
            ("gv_list_request", {"state": ["running", "ready", "preempted"],
                                 "priority": "normal", "name": "spinner-"}),
            ("gv_stack_request", {"ids": ids[:4]}),
            ("gv_channels_request", {}),
            ("gv_stats_request", {}),
        ]
        for channel in ("control", "shell"):
            for msg_type, content in requests:
                r, dt = kernel.call(msg_type, content, channel=channel)
                key = f"{msg_type}/{channel}"
                worst[key] = max(worst.get(key, 0.0), dt)
                assert r["msg_type"] == msg_type.replace("_request", "_reply")
                assert r["content"]["status"] == "ok", r["content"]
                assert dt < GV_LIMIT, f"{key} took {dt * 1e3:.1f} ms"
            # paging: 3 at a time over the 8 spinners
            seen, cursor = [], 0
            for _ in range(10):
                r, dt = kernel.call("gv_list_request",
                                    {"name": "spinner-", "limit": 3, "cursor": cursor},
                                    channel=channel)
                assert dt < GV_LIMIT
                c = r["content"]
                assert c["status"] == "ok" and len(c["items"]) <= 3
                seen += [it["id"] for it in c["items"]]
                cursor = c["next_cursor"]
                if not cursor:
                    break
            assert sorted(seen) == sorted(ids)
        r, _ = kernel.call("gv_list_request", {"name": "spinner-"})
        assert r["content"]["total"] == 8
        assert sorted(it["id"] for it in r["content"]["items"]) == sorted(ids)
        r, _ = kernel.call("gv_list_request", {"name": "spinner-", "state": "finished"})
        assert r["content"]["items"] == []
        r, _ = kernel.call("gv_stack_request", {"ids": [ids[0]]})
        frames = r["content"]["stacks"][str(ids[0])]["frames"]
        assert any("gvspawn" in f["filename"] for f in frames), frames
        r, _ = kernel.call("gv_stats_request")
        assert r["content"]["workers"] == 2
        states = r["content"]["states"]
        assert states["running"] + states["ready"] + states["preempted"] >= 8, states
        # cancel them all, half on each channel, each in time
        for i, gid in enumerate(ids):
            channel = "shell" if i % 2 else "control"
            r, dt = kernel.call("gv_cancel_request", {"ids": [gid]}, channel=channel)
            worst[f"gv_cancel_request/{channel}"] = max(
                worst.get(f"gv_cancel_request/{channel}", 0.0), dt)
            assert r["content"]["status"] == "ok"
            assert r["content"]["cancelled"] == {str(gid): True}
            assert dt < GV_LIMIT, f"gv_cancel took {dt * 1e3:.1f} ms"
        for gid in ids:
            assert gv_meta(exit_event(kernel, gid))["status"] == "cancelled"
        ids = []
        r, _ = kernel.call("gv_list_request", {"name": "spinner-"})
        assert r["content"]["total"] == 0
    finally:
        print("worst gv_* round trips (ms): " + ", ".join(
            f"{k} {v * 1e3:.1f}" for k, v in sorted(worst.items())))
        if ids:
            kernel.call("gv_cancel_request", {"ids": ids})


@pytest.mark.parametrize("channel", ["control", "shell"])
def test_gv_requests_bad_arguments(kernel, channel):
    bad = [
        ("gv_list_request", {"limit": -1}),
        ("gv_list_request", {"limit": "ten"}),
        ("gv_list_request", {"state": "sleepy"}),
        ("gv_list_request", {"name": 5}),
        ("gv_stack_request", {}),
        ("gv_stack_request", {"ids": ["x"]}),
        ("gv_channels_request", {"preview": 1000}),
        ("gv_cancel_request", {"ids": []}),
        ("gv_spawn_request", {"code": 5}),
        ("gv_spawn_request", {"code": "def ("}),
    ]
    for msg_type, content in bad:
        r, dt = kernel.call(msg_type, content, channel=channel)
        assert r["msg_type"] == msg_type.replace("_request", "_reply")
        assert r["content"]["status"] == "error", (msg_type, content, r["content"])
        assert r["content"]["ename"] and r["content"]["evalue"]
        assert dt < GV_LIMIT * 5
    r, _ = kernel.call("gv_cancel_request", {"ids": [10**9]}, channel=channel)
    assert r["content"]["status"] == "ok" and r["content"]["cancelled"] == {str(10**9): None}
    r, _ = kernel.call("gv_stack_request", {"ids": [10**9]}, channel=channel)
    assert "error" in r["content"]["stacks"][str(10**9)]
    r, _ = kernel.call("no_such_thing_request", {}, channel=channel)
    assert r["msg_type"] == "no_such_thing_reply"
    assert r["content"]["status"] == "error"
    assert "no_such_thing_request" in r["content"]["evalue"]
    assert_alive(kernel)


# -- resilience ------------------------------------------------------------------------------

@pytest.mark.parametrize("code, ename", [
    ("raise ValueError('mine')", "ValueError"),
    ("def f():\n    return f()\nf()", "RecursionError"),
    ("class R:\n    def __repr__(self):\n        return repr(self)\nR()", "RecursionError"),
    ("raise SystemExit(3)", "SystemExit"),
    ("import sys\nsys.exit(0)", "SystemExit"),
    ("exit()", "SystemExit"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("raise BaseException('base')", "BaseException"),
])
def test_user_failures_leave_kernel_alive(kernel, code, ename):
    reply, msgs = kernel.execute(code)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == ename
    assert by_type(msgs, "error")[0]["content"]["ename"] == ename
    assert_alive(kernel)
    r, msgs = kernel.execute_ok("'still here'")
    assert result_text(msgs) == "'still here'"


def test_deeply_nested_source_leaves_kernel_alive(kernel):
    """Legal but deeply nested source, in a cell and through eval/compile in one: CPython's
    parser overflowed the GVThread's stack into SIGSEGV before the kernel could answer;
    it now parses on a borrowed stack (native/pycompile.c)."""
    r, msgs = kernel.execute_ok("len(eval('[' * 199 + ']' * 199))")
    assert result_text(msgs) == "1"
    r, msgs = kernel.execute_ok("x = " + "(" * 199 + "1" + ")" * 199 + "\nx")
    assert result_text(msgs) == "1"
    for cell in ("eval('-' * 20000 + '1')", "-" * 20000 + "1",
                 "import ast; ast.parse('not ' * 20000 + 'x')"):
        reply, msgs = kernel.execute(cell)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] in ("MemoryError", "RecursionError"), reply["content"]
    assert_alive(kernel)


def test_huge_output_is_truncated(kernel):
    reply, msgs = kernel.execute("print('x' * 50_000_000)", timeout=60)
    assert reply["content"]["status"] == "ok"
    text = stream_text(msgs, "stdout")
    assert text.startswith("xxxx")
    assert len(text) < 2_000_000, len(text)
    assert "output truncated" in text
    assert f"{50_000_000 - (1 << 20):,} more characters" in text  # says how much
    assert_alive(kernel)


def test_background_printing_100k_lines(kernel):
    _, msgs = kernel.execute_ok(
        "h = %gvspawn --name flood for i in range(100_000): print(i)\nh.id")
    gid = int(result_text(msgs))

    def done(out):
        return any(gv_meta(m).get("event") == "exit" for m in out)

    got = kernel.iopub_collect(lambda m: gv_meta(m).get("id") == gid, done, timeout=60,
                               replay=True)
    assert gv_meta(got[-1])["status"] == "ok"
    text = "".join(m["content"]["text"] for m in got[:-1] if m["msg_type"] == "stream")
    assert text == "".join(f"{i}\n" for i in range(100_000))
    assert len(got) < 10_000, f"{len(got)} messages: stream output not merged"
    assert_alive(kernel)



# -- review regressions: threads, sockets, user code on the loops ---------------------------

def test_executor_replies_do_not_race_the_shell_loop(kernel):
    """Silent execute_requests (answered by the executor) and kernel_info_requests
    (answered by the shell loop), 50 in flight on each of two DEALERs: both threads
    used to send on the shell ROUTER, and libzmq aborted (router.cpp !_current_out)."""
    import threading

    import zmq
    info = kernel.kc.get_connection_info()
    ctx = zmq.Context()
    n = 1500
    res = {}

    def client(kind):
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.connect(f"tcp://127.0.0.1:{info['shell_port']}")
        sent = got = 0
        deadline = time.monotonic() + 30
        try:
            while got < n and time.monotonic() < deadline:
                while sent - got < 50 and sent < n:
                    if kind == "exec":
                        kernel.kc.session.send(s, "execute_request", {
                            "code": "pass", "silent": True, "store_history": False})
                    else:
                        kernel.kc.session.send(s, "kernel_info_request", {})
                    sent += 1
                if not s.poll(5000):
                    break
                s.recv_multipart()
                got += 1
        finally:
            res[kind] = got
            s.close()

    ts = [threading.Thread(target=client, args=(k,)) for k in ("exec", "info")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ctx.term()
    assert kernel.proc.poll() is None, kernel.log()
    assert res == {"exec": n, "info": n}, res
    kernel.drain_iopub()
    assert_alive(kernel)


def _send_raw(k, channel, msg_type, content_bytes):
    """A validly signed message whose content frame is content_bytes."""
    import json
    s = k.kc.session
    msg = s.msg(msg_type, {})
    hdr = json.dumps(msg["header"], default=str).encode()
    sig = s.sign([hdr, b"{}", b"{}", content_bytes])
    chan = k.kc.shell_channel if channel == "shell" else k.kc.control_channel
    chan.socket.send_multipart([b"<IDS|MSG>", sig, hdr, b"{}", b"{}", content_bytes])


@pytest.mark.parametrize("channel", ["shell", "control"])
def test_deeply_nested_json_is_dropped_not_fatal(kernel, channel):
    _send_raw(kernel, channel, "kernel_info_request",
              b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    time.sleep(0.2)
    assert_alive(kernel)
    r, _ = kernel.call("gv_stats_request", channel=channel)
    assert r["content"]["status"] == "ok"
    assert "RecursionError" in kernel.log()  # dropped and counted, with a warning


def test_exception_whose_str_raises(kernel):
    code = ("class StrBoom(Exception):\n"
            "    def __str__(self):\n"
            "        raise StrBoom()\n"
            "raise StrBoom()")
    reply, msgs = kernel.execute(code)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "StrBoom"
    assert "unprintable" in reply["content"]["evalue"]
    assert by_type(msgs, "error")
    _, msgs = kernel.execute_ok("'executor still here'")
    assert result_text(msgs) == "'executor still here'"


def test_introspection_of_hostile_objects(kernel):
    kernel.execute_ok("class HostileA:\n"
                      "    @property\n"
                      "    def boom(self):\n"
                      "        raise SystemExit(3)\n"
                      "hostile_a = HostileA()\n"
                      "class HostileB:\n"
                      "    def __repr__(self):\n"
                      "        while True: pass\n"
                      "hostile_b = HostileB()\n"
                      "import gvthread\n"
                      "hostile_ch = gvthread.Channel(4)\n"
                      "hostile_ch.send(hostile_b)\n"
                      "hostile_ch.send((1, 'two', [3.0]))\n"
                      "hostile_ch.id")
    # a property raising SystemExit while completing: nothing matches, nothing ends
    r, _ = kernel.call("complete_request", {"code": "hostile_a.boom.", "cursor_pos": 15},
                       channel="shell")
    assert r["content"]["status"] == "ok" and r["content"]["matches"] == []
    assert_alive(kernel)
    # a __repr__ that never returns: inspect answers (not found) within its timeout
    r, dt = kernel.call("inspect_request", {"code": "hostile_b", "cursor_pos": 9},
                        channel="shell", timeout=10)
    assert r["content"]["status"] == "ok" and r["content"]["found"] is False
    assert dt < 3.0, dt
    assert_alive(kernel, 1.0)
    # channel previews show such an object by its type only
    r, dt = kernel.call("gv_channels_request", {"preview": 5}, timeout=10)
    assert r["content"]["status"] == "ok" and dt < 2.0, dt
    previews = [c["preview"] for c in r["content"]["items"] if c["length"] == 2]
    assert ["<HostileB object>", "(1, 'two', [3.0])"] in previews, previews
    kernel.execute_ok("hostile_ch.close(); del hostile_a, hostile_b, hostile_ch")


def test_unserialisable_display_is_the_cells_error(kernel):
    reply, msgs = kernel.execute("display({'application/json': {(1, 2): 3}}, raw=True)\n"
                                 "print('not reached')")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "TypeError"
    assert "JSON" in reply["content"]["evalue"]
    assert "not reached" not in stream_text(msgs)
    # the publisher lives on: output and idle statuses still arrive
    _, msgs = kernel.execute_ok("print('published')")
    assert stream_text(msgs, "stdout") == "published\n"


def test_display_output_is_bounded(kernel):
    # The publisher is held (its socket lock) while the cell displays 48 MiB: past
    # MAX_PENDING (32 MiB) the rest is dropped and counted, as stream output is.
    code = ("k = get_ipython().kernel\n"
            "big = 'y' * (1 << 20)\n"
            "k.iopub._sock_lock.acquire()\n"
            "try:\n"
            "    for _ in range(48):\n"
            "        display(big)\n"
            "    dropped = k.iopub.dropped_bytes\n"
            "finally:\n"
            "    k.iopub._sock_lock.release()\n"
            "dropped > 0")
    reply, msgs = kernel.execute(code, timeout=60)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert result_text(msgs) == "True"
    assert "dropping some" in stream_text(msgs, "stderr")
    kernel.drain_iopub()
    assert_alive(kernel)


def test_user_expressions_run_in_the_cells_gvthread(kernel):
    reply, _ = kernel.execute_ok("pass", user_expressions={
        "gid": "__import__('gvthread').current_id()"})
    ue = reply["content"]["user_expressions"]["gid"]
    assert ue["status"] == "ok"
    assert ue["data"]["text/plain"] == str(reply["metadata"]["gvthread"]["id"])


def test_background_cancelled_before_start_and_linecache(kernel):
    code = ("import gvthread, linecache\n"
            "k = get_ipython().kernel\n"
            "old = set(linecache.cache)\n"
            "ids = []\n"
            "for i in range(100):\n"
            "    h = k.spawn_background('pass', {}, name='early')\n"
            "    h.cancel()\n"
            "    ids.append(h.id)\n"
            "gvthread.sleep(0.5)\n"
            "left = [i for i in ids if i in k.contexts]\n"
            "spawn_lines = [f for f in linecache.cache\n"
            "               if f.startswith('<gvspawn-') and f not in old]\n"
            "for i in range(1100):\n"
            "    k._remember_source(f'<cell-lc{i}>', 'pass')\n"
            "cells = sum(f.startswith('<cell-') for f in linecache.cache)\n"
            "left, spawn_lines, cells <= 1000, ids[-1]")
    _, msgs = kernel.execute_ok(code)
    left, lines, bounded, last = eval(result_text(msgs))
    assert left == [] and lines == [] and bounded
    assert gv_meta(exit_event(kernel, last))["status"] == "cancelled"
    # a cell over 1 MiB is not kept compiled
    kernel.execute_ok("big_cell = 1\n" + "#" * (1 << 20))
    _, msgs = kernel.execute_ok(
        "max(map(len, get_ipython().kernel._compiled)) < (1 << 20)")
    assert result_text(msgs) == "True"


def test_complete_on_a_long_line_is_fast(kernel):
    code = "x" * 20_000
    r, dt = kernel.call("complete_request", {"code": code, "cursor_pos": len(code)},
                        channel="shell")
    assert r["content"]["status"] == "ok" and dt < 1.0, dt
    code = "a." * 10_000 + "b"
    r, dt = kernel.call("inspect_request", {"code": code, "cursor_pos": len(code)},
                        channel="shell")
    assert r["content"]["status"] == "ok" and dt < 1.0, dt


def test_interrupt_while_the_cell_compiles(kernel):
    # ~0.5 s to parse and instrument: the interrupt arrives before the GVThread exists
    code = "slow_to_compile = [" + "1," * 100_000 + "]"
    msg_id = kernel.kc.execute(code)
    kernel.iopub_collect(lambda m: (m["parent_header"].get("msg_id") == msg_id
                                    and m["msg_type"] == "execute_input"),
                         lambda out: bool(out))
    r, _ = kernel.call("interrupt_request")
    assert r["content"]["status"] == "ok"
    reply = kernel.shell_reply(msg_id)
    kernel.iopub_until_idle(msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"


def test_connection_write_ignores_a_planted_link(tmp_path):
    import os

    from gvkernel import connection
    path = tmp_path / "kernel-x.json"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, f"{path}.{os.getpid()}.tmp")  # the old, guessable name
    connection.write(str(path), {"key": "k"})
    assert victim.read_text() == "precious"
    assert connection.read(str(path))["key"] == "k"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kernel-x.json", f"kernel-x.json.{os.getpid()}.tmp", "victim"]


def test_bad_requests_are_answered_not_logged_as_bugs(kernel):
    before = kernel.log()
    for msg_type, content, channel in [
            ("gv_stack_request", {"ids": [2**64]}, "control"),
            ("gv_cancel_request", {"ids": [2**70]}, "shell"),
            ("history_request", {"hist_access_type": "bogus"}, "shell"),
            ("complete_request", {"code": 5}, "shell"),
            ("inspect_request", {"code": ["x"], "cursor_pos": 0}, "shell"),
            ("is_complete_request", {"code": 5}, "shell")]:
        r, _ = kernel.call(msg_type, content, channel=channel)
        assert r["content"]["status"] == "error", (msg_type, r["content"])
    assert kernel.log() == before  # nothing logged (debug is off)
    assert_alive(kernel)


def test_history_search_limit_and_unique(kernel):
    for _ in range(3):
        kernel.execute_ok("hs_unique_marker = 1")
    kernel.execute_ok("hs_unique_marker = 2")
    kc = kernel.kc
    found = kc.history(hist_access_type="search", pattern="hs_unique_marker*", n=2,
                       reply=True, timeout=20)["content"]["history"]
    assert [h[2] for h in found] == ["hs_unique_marker = 1", "hs_unique_marker = 2"]
    found = kc.history(hist_access_type="search", pattern="hs_unique_marker*", n=10,
                       unique=True, reply=True, timeout=20)["content"]["history"]
    assert [h[2] for h in found] == ["hs_unique_marker = 1", "hs_unique_marker = 2"]
    assert found[0][1] == found[1][1] - 1  # the latest run of each source

def test_stack_size_option(tmp_path):
    """--stack-size sets the stack of the kernel's GVThreads: cells and their spawns."""
    code = ("import gvthread\n"
            "from gvthread import _core\n"
            "print(_core.stack_free() // 1024, gvthread.spawn(_core.stack_free).join() // 1024)")
    with KernelProc(tmp_path / "small", "--stack-size", "1M") as k:
        _, msgs = k.execute_ok(code)
        cell, spawned = map(int, stream_text(msgs, "stdout").split())
        assert 0 < cell < 1024 and 0 < spawned < 1024, (cell, spawned)
    with KernelProc(tmp_path / "default") as k:
        _, msgs = k.execute_ok(code + "\nimport numpy, copy\n"
                               "x = []\nfor _ in range(300): x = [x]\n"
                               "print(len(repr(copy.deepcopy(x))))")
        out = stream_text(msgs, "stdout").split()
        assert int(out[0]) > 7 * 1024 and int(out[1]) > 7 * 1024, out
        assert out[2] == "602", out  # 500 deep is a RecursionError on a thread too
    for bad in ("5K", "0", "lots", "32G"):
        p = subprocess.run([sys.executable, "-m", "gvkernel", "-f", str(tmp_path / "bad.json"),
                            "--stack-size", bad], capture_output=True, text=True, timeout=60,
                           env=kernel_env(str(tmp_path / "h.sqlite")))
        assert p.returncode != 0 and "stack" in p.stderr and "Traceback" not in p.stderr, \
            (bad, p.returncode, p.stderr)


def test_exhausting_slots(tmp_path):
    with KernelProc(tmp_path, "--max-gvthreads", "64") as k:
        code = ("import gvthread, time\n"
                "hs = []\n"
                "try:\n"
                "    while len(hs) < 1000:\n"
                "        hs.append(gvthread.spawn(time.sleep, 30))\n"
                "except gvthread.SlotsExhausted as e:\n"
                "    print('exhausted after', len(hs))\n")
        reply, msgs = k.execute(code, timeout=30)
        assert reply["content"]["status"] == "ok", reply["content"]
        out = stream_text(msgs, "stdout")
        assert out.startswith("exhausted after "), out
        assert int(out.split()[-1]) < 64
        assert_alive(k)
        # the cell's own slot is free again: a cell runs, and spawning from it fails clearly
        reply, _ = k.execute("gvthread.spawn(time.sleep, 30)", timeout=30)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "SlotsExhausted", reply["content"]
        # take the last slot from outside (gv_spawn); then a cell cannot even start
        r, _ = k.call("gv_spawn_request", {"code": "time.sleep(30)", "name": "last-slot"})
        assert r["content"]["status"] == "ok", r["content"]
        r, _ = k.call("gv_spawn_request", {"code": "time.sleep(30)"})
        assert r["content"]["status"] == "error"
        assert r["content"]["ename"] == "SlotsExhausted", r["content"]
        reply, msgs = k.execute("1 + 1", timeout=30)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "SlotsExhausted", reply["content"]
        assert by_type(msgs, "error")
        assert_alive(k)
        # gv_* still work without a slot; cancelling frees them
        r, _ = k.call("gv_list_request", {"limit": 1000})
        ids = [it["id"] for it in r["content"]["items"]]
        assert len(ids) >= 60
        r, _ = k.call("gv_cancel_request", {"ids": ids})
        assert r["content"]["status"] == "ok"
        deadline = time.monotonic() + 10
        while k.call("gv_list_request")[0]["content"]["total"] and time.monotonic() < deadline:
            time.sleep(0.05)
        reply, msgs = k.execute_ok("len(hs)")
        assert int(result_text(msgs)) == int(out.split()[-1])
        assert_alive(k)
    assert_clean_log(k)


# -- shutdown and restart -----------------------------------------------------------------------------

def test_shutdown_request(tmp_path):
    k = KernelProc(tmp_path)
    try:
        k.execute_ok("x = 1")
        t0 = time.monotonic()
        msg_id = k.request("shutdown_request", {"restart": False})
        reply = k.control_reply(msg_id)
        assert reply["content"] == {"status": "ok", "restart": False}
        rc = k.proc.wait(10)
        assert rc == 0, k.log()
        assert time.monotonic() - t0 < 5
        pub = k.iopub_collect(lambda m: m["msg_type"] == "shutdown_reply",
                              lambda out: bool(out), timeout=5)
        assert pub[0]["parent_header"]["msg_id"] == msg_id
    finally:
        k.stop()


def _gvkernel_install(prefix):
    exe = shutil.which("gvkernel")
    cmd = [exe] if exe else [sys.executable, "-m", "gvkernel"]
    subprocess.run([*cmd, "install", "--prefix", str(prefix)], check=True,
                   capture_output=True, timeout=60)
    spec = prefix / "share" / "jupyter" / "kernels" / "gvthread" / "kernel.json"
    assert spec.exists()
    return prefix / "share" / "jupyter"


def test_kernelmanager_interrupt_restart_history(tmp_path, monkeypatch):
    from jupyter_client.manager import KernelManager

    from kernel_util import Client

    jupyter_path = _gvkernel_install(tmp_path / "prefix")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    history = tmp_path / "history.sqlite"
    km = KernelManager(kernel_name="gvthread")
    assert km.kernel_spec.interrupt_mode == "message"
    km.start_kernel(env=kernel_env(history), extra_arguments=["--workers", "2"])
    kc = None
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        c = Client(kc)
        c.execute_ok("restart_marker = 41 + 1")
        # interrupt through the KernelManager (interrupt_mode "message")
        msg_id = kc.execute("print('go')\nwhile True:\n    pass")
        wait_started(c, msg_id)
        time.sleep(0.2)
        t0 = time.perf_counter()
        km.interrupt_kernel()
        reply = c.shell_reply(msg_id)
        dt = time.perf_counter() - t0
        print(f"KernelManager.interrupt_kernel: execute_reply after {dt * 1e3:.1f} ms")
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert dt < INTERRUPT_LIMIT
        first_pid = km.provisioner.process.pid
        kc.stop_channels()

        km.restart_kernel(now=False)
        assert km.is_alive()
        assert km.provisioner.process.pid != first_pid
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        c = Client(kc)
        reply, _ = c.execute("restart_marker")
        assert reply["content"]["ename"] == "NameError"  # a fresh namespace
        reply, msgs = c.execute_ok("restart_marker = 'new'\nrestart_marker * 2")
        assert result_text(msgs) == "'newnew'"
        assert reply["content"]["execution_count"] == 2
        # history of the first run persisted (in the tmp file) across the restart
        found = kc.history(hist_access_type="search", pattern="restart_marker = *",
                           reply=True, timeout=20)["content"]["history"]
        assert [h[2] for h in found] == ["restart_marker = 41 + 1",
                                         "restart_marker = 'new'\nrestart_marker * 2"]
        assert found[0][0] < found[1][0]  # an earlier session
        tail = kc.history(hist_access_type="tail", n=3, reply=True,
                          timeout=20)["content"]["history"]
        assert [h[2] for h in tail][-1] == "restart_marker = 'new'\nrestart_marker * 2"
        assert history.exists()
        kc.stop_channels()
        kc = None
        t0 = time.monotonic()
        km.shutdown_kernel(now=False)
        assert time.monotonic() - t0 < 4.5  # exited on request, not killed after waiting
        assert not km.is_alive()
    finally:
        if kc is not None:
            kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
