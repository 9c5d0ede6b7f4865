"""gvshell driven in a real terminal (pexpect pty), against real gvkernel subprocesses.

Every wait has a deadline (Term.expect); every process this module starts is killed in
teardown: gvshell children by pexpect, kernels found by the unique tmp dir on their
command line (a kernel gvshell starts runs in its own session, so killing gvshell alone
would not end it).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest

pexpect = pytest.importorskip("pexpect")
from jupyter_client.blocking import BlockingKernelClient  # noqa: E402

pytestmark = pytest.mark.timeout(120)

from shell_util import WAIT, Term  # noqa: E402


def _env(tmp) -> dict:
    env = dict(os.environ)
    env.update(JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), GVSHELL_HISTORY=str(tmp / "shell_hist"),
               GVKERNEL_HISTORY=str(tmp / "kernel_hist.sqlite"), PROMPT_TOOLKIT_NO_CPR="1",
               TERM="xterm", COLUMNS="200", LINES="50")
    env.pop("JUPYTER_PATH", None)
    return env


def _kill_procs_under(marker: str) -> None:
    """Kill (by pid) every process whose command line names marker (our tmp dir)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def tmp(tmp_path_factory):
    d = tmp_path_factory.mktemp("gvshell")
    (d / "runtime").mkdir()
    yield d
    _kill_procs_under(str(d))


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """One gvshell with its own local kernel, shared by the interaction tests."""
    d = tmp_path_factory.mktemp("gvshell_shared")
    (d / "runtime").mkdir()
    t = Term(["--workers", "2"], _env(d))
    try:
        t.expect(r"In \[1\]: ", timeout=WAIT)
        yield t
    finally:
        t.close()
        _kill_procs_under(str(d))


# -- the shared session ---------------------------------------------------------------

def test_multiline_definition(shell):
    shell.send("def f(x):\r")
    shell.expect(r"\.\.\.: ")           # continuation: the kernel said incomplete
    shell.send("return x*2\r")
    shell.send("\r")                     # blank last line submits
    shell.expect(r"In \[\d+\]: ")
    shell.run("f(21)", "42")


def test_tab_completes_from_kernel(shell):
    shell.run("my_long_variable_name = 5")
    shell.send("my_lo\t")
    shell.expect("my_long_variable_name")
    shell.send("\r")
    shell.expect(r"Out\[\d+\]: 5\b")


def test_question_mark_inspects(shell):
    shell.send("len?\r")
    shell.expect(r"Return the number of items in a container")
    shell.expect(r"In \[\d+\]: ")


def test_background_output_while_typing_and_gv_magics(shell):
    shell.send("import time\r")
    shell.expect(r"In \[\d+\]: ")
    shell.send("def tick():\r")
    shell.send("while True:\r")
    shell.send("print('tick', flush=True)\r")
    shell.send("time.sleep(0.1)\r")
    shell.send("\r")
    shell.expect(r"In \[\d+\]: ")
    m = shell.run("%gvspawn --name ticker tick()", r"<gvthread\.Handle id=(\d+)")
    gid = m.group(1)
    shell.expect(rf"\[{gid} ticker\] tick")

    # half a line typed; background output must appear meanwhile...
    shell.send("(12345 +")
    seen = shell.pump(0.6)
    assert re.search(rf"\[{gid} ticker\] tick", seen), seen[-2000:]
    # ...and the line, finished, must run intact
    shell.send(" 1) * 2\r")
    shell.expect(r"Out\[\d+\]: 24692\b")

    shell.send("%gvps\r")
    shell.expect(rf"\n{gid}\s+ticker\s+\w+")
    shell.send(f"%gvstack {gid}\r")
    shell.expect(rf"GVThread {gid} \(most recent call last\)")
    shell.expect(r"in tick\n\s+(time\.sleep\(0\.1\)|print\('tick', flush=True\))")

    mark = shell.pos
    shell.send(f"%gvcancel {gid}\r")
    # the reply (control) and the GVThread's exit note (iopub) may come in either order
    shell.expect(rf"GVThread {gid}: cancelled")
    end = shell.pos
    shell.pos = mark
    shell.expect(rf"\[{gid} ticker\] \[GVThread {gid} \(ticker\) cancelled\]")
    shell.pos = max(end, shell.pos)
    shell.expect(r"In \[\d+\]: ")
    later = shell.pump(0.5)
    assert not re.search(rf"\[{gid} ticker\] tick$", later, re.M), later
    shell.send("%gvps --name ticker\r")
    shell.expect(r"ID\s+NAME\s+STATE[^\n]*\n")
    row = shell.pump(0.3)
    assert not re.search(rf"^{gid}\s+ticker", row, re.M), row


def test_ctrl_c_interrupts_busy_cell(shell):
    shell.send("while True: pass\r")
    shell.pump(0.5)
    t0 = time.monotonic()
    shell.send("\x03")
    shell.expect(r"KeyboardInterrupt", timeout=WAIT)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"interrupt took {elapsed:.2f} s"
    shell.expect(r"In \[\d+\]: ")
    shell.run("1 + 2", "3")


def test_ctrl_c_at_prompt_clears_line(shell):
    shell.send("this is not python")
    shell.pump(0.2)
    shell.send("\x03")
    shell.expect(r"In \[\d+\]: ")
    shell.run("40 + 2", "42")   # the cleared text did not stay in the buffer


# -- own sessions ---------------------------------------------------------------------

def test_start_kill9_restart_and_exit(tmp):
    t = Term(["--workers", "2"], _env(tmp))
    try:
        t.expect(r"In \[1\]: ")
        t.run("1+1", r"2\b")
        assert re.search(r"Out\[1\]: 2\b", t.text()), t.text()[-2000:]
        pid = int(t.run("import os; os.getpid()", r"(\d+)").group(1))
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        t.expect(r"the kernel died", timeout=WAIT)
        elapsed = time.monotonic() - t0
        assert elapsed < 3.0, f"death noticed after {elapsed:.2f} s"
        t.expect(r"Restart a new kernel\? \(\[y\]/n\)")
        t.send("y\r")
        t.expect(r"restarted")
        t.expect(r"In \[1\]: ")
        pid2 = int(t.run("import os; os.getpid()", r"(\d+)").group(1))
        assert pid2 != pid and _alive(pid2)
        t.send("\x04")
        t.expect(r"Do you really want to exit \(\[y\]/n\)\?")
        t.send("y\r")
        t.child.expect(pexpect.EOF, timeout=WAIT)
        deadline = time.monotonic() + 5
        while _alive(pid2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid2), "gvshell left its kernel running"
    finally:
        t.close()


def _start_kernel(tmp, env):
    path = str(tmp / "runtime" / f"kernel-{uuid.uuid4().hex[:8]}.json")
    log = open(tmp / "kernel.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gvkernel", "-f", path, "--workers", "2"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    log.close()
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp / "kernel.log").read_text()
        time.sleep(0.02)
    kc = BlockingKernelClient()
    kc.load_connection_file(path)
    kc.start_channels()
    kc.wait_for_ready(timeout=WAIT)
    return path, proc, kc


def _control(kc, msg_type, content):
    msg = kc.session.msg(msg_type, content)
    kc.control_channel.send(msg)
    deadline = time.monotonic() + WAIT
    while True:
        r = kc.get_control_msg(timeout=max(0.1, deadline - time.monotonic()))
        if r["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return r["content"]


def test_two_clients_see_each_others_gvthreads(tmp):
    env = _env(tmp)
    path, proc, kc = _start_kernel(tmp, env)
    t = None
    try:
        reply = kc.execute_interactive("import time\n%gvspawn --name peer_sleeper time.sleep(60)",
                                       timeout=WAIT)
        assert reply["content"]["status"] == "ok", reply["content"]
        t = Term(["--existing", path], env)
        t.expect(r"In \[\d+\]: ")
        t.send("%gvps\r")
        t.expect(r"\n\d+\s+peer_sleeper\s")
        t.expect(r"In \[\d+\]: ")
        t.run("%gvspawn --name shell_sleeper time.sleep(60)", r"<gvthread\.Handle")
        names = [g["name"] for g in _control(kc, "gv_list_request", {"limit": 100})["items"]]
        assert "shell_sleeper" in names and "peer_sleeper" in names, names
        # --existing: Ctrl-D leaves at once and the kernel keeps running
        t.send("\x04")
        t.child.expect(pexpect.EOF, timeout=WAIT)
        assert proc.poll() is None
        assert _control(kc, "kernel_info_request", {})["status"] == "ok"
    finally:
        if t is not None:
            t.close()
        kc.stop_channels()
        proc.kill()
        proc.wait(10)


def test_existing_without_file_picks_newest(tmp):
    env = _env(tmp)
    path, proc, kc = _start_kernel(tmp, env)
    t = None
    try:
        t = Term(["--existing"], env)
        t.expect(re.escape(os.path.basename(path)))
        t.expect(r"In \[\d+\]: ")
        t.run("6 * 7", r"42\b")
    finally:
        if t is not None:
            t.close()
        kc.stop_channels()
        proc.kill()
        proc.wait(10)



def test_existing_kernel_death_offers_reconnect(tmp):
    env = _env(tmp)
    path, proc, kc = _start_kernel(tmp, env)
    kc.stop_channels()
    t = None
    proc2 = None
    try:
        t = Term(["-f", path, "--ip", "127.0.0.1"], env)
        t.expect(r"In \[\d+\]: ")
        t.send("x = 1")                  # a half-typed line survives the reconnect
        t.pump(0.2)
        proc.kill()
        t0 = time.monotonic()
        t.expect(r"the kernel died", timeout=WAIT)
        assert time.monotonic() - t0 < 3.0
        t.expect(r"Reconnect to .*\? \(\[y\]/n\)")
        # a new kernel on the same connection file (gvkernel -f binds the file's ports)
        proc2 = subprocess.Popen([sys.executable, "-m", "gvkernel", "-f", path, "--workers",
                                  "2"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env)
        t.send("y\r")
        t.expect(r"reconnected")
        t.expect(r"In \[\d+\]: x = 1")
        t.send("0\r")
        t.expect(r"In \[\d+\]: ")
        t.run("x", r"10\b")
        t.send("\x04")
        t.child.expect(pexpect.EOF, timeout=WAIT)
        assert proc2.poll() is None, "an --existing kernel must be left running"
    finally:
        if t is not None:
            t.close()
        for p in (proc, proc2):
            if p is not None:
                p.kill()
                p.wait(10)


def test_layering_no_runtime_import():
    code = ("import sys, gvshell.app, gvshell.repl, gvshell.magics, gvshell.output;"
            "bad = [m for m in ('gvthread', 'gvkernel.kernel') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "gvshell", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--existing" in out.stdout, out


def _tmux(sock, *args, check=True):
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True,
                          check=check).stdout


def _screen_until(sock, pattern, timeout=WAIT):
    """The rendered screen (tmux capture-pane) once it matches pattern."""
    rx = re.compile(pattern, re.S)
    deadline = time.monotonic() + timeout
    while True:
        screen = _tmux(sock, "capture-pane", "-p", "-t", "0")
        if rx.search(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not on screen in {timeout} s:\n{screen}")
        time.sleep(0.1)


def test_gvtop_draws_live_and_quits_on_q(tmp):
    """%gvtop renders a full screen; read it as drawn, from tmux."""
    import shutil
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (.ci/run installs it)")
    sock = f"gvtop-{uuid.uuid4().hex[:8]}"
    env = _env(tmp)
    cmd = " ".join(f"{k}={v!s}" for k, v in env.items()
                   if k in ("JUPYTER_RUNTIME_DIR", "GVSHELL_HISTORY", "GVKERNEL_HISTORY"))
    _tmux(sock, "new-session", "-d", "-x", "160", "-y", "48",
          f"env {cmd} {sys.executable} -m gvshell --workers 2")
    try:
        _screen_until(sock, r"In \[1\]:")
        for line in ("%gvspawn --name topbusy while True: pass",
                     "import gvthread; tc = gvthread.Channel(8, name='topchan'); tc.send(1)"):
            _tmux(sock, "send-keys", "-t", "0", line, "Enter")
        _screen_until(sock, r"In \[3\]:")
        _tmux(sock, "send-keys", "-t", "0", "%gvtop", "Enter")
        screen = _screen_until(sock, r"gvtop .*w0 +\[.*GVThreads: .*topbusy.*topchan")
        polls = int(re.search(r"polls (\d+)", screen).group(1))
        # redrawn from new polls (4 a second by design; a loaded box may lag, so no rate
        # is asserted here: bench/ measures, tests check behaviour)
        deadline = time.monotonic() + WAIT
        while int(re.search(r"polls (\d+)", screen).group(1)) < polls + 2:
            assert time.monotonic() < deadline, screen
            time.sleep(0.2)
            screen = _screen_until(sock, r"polls \d+")
        assert re.search(r"w0 +\[#+", screen) or re.search(r"w1 +\[#+", screen), screen
        _tmux(sock, "send-keys", "-t", "0", "s")
        _screen_until(sock, r"\(sort cpu[,)]")
        _tmux(sock, "send-keys", "-t", "0", "Enter")       # the selected GVThread's stack
        _screen_until(sock, r"stack of the selected GVThread")
        _tmux(sock, "send-keys", "-t", "0", "q")
        screen = _screen_until(sock, r"In \[\d+\]:\s*$")
        _tmux(sock, "send-keys", "-t", "0", "%gvps --name topbusy", "Enter")
        screen = _screen_until(sock, r"\n(\d+) +topbusy")
        gid = re.search(r"\n(\d+) +topbusy", screen).group(1)
        _tmux(sock, "send-keys", "-t", "0", f"%gvcancel {gid}", "Enter")
        _screen_until(sock, rf"GVThread {gid}: cancelled")
    finally:
        _tmux(sock, "kill-server", check=False)
