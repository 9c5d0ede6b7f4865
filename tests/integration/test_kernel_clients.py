"""gvkernel driven by real Jupyter clients.

(a) nbclient runs a notebook (built with nbformat here) on the installed "gvthread"
    kernelspec, including a background GVThread started with %gvspawn and joined later;
(b) `jupyter console --existing FILE` (jupyter-console), typed into in a tmux pane,
    against a gvkernel subprocess this test starts.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from kernel_peers_util import KernelProcess, install_kernelspec, kernel_env

pytestmark = pytest.mark.timeout(120)


# -- (a) nbclient -------------------------------------------------------------------


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("gvspec")
    share = install_kernelspec(str(d / "prefix"))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", share)
    mp.setenv("GVKERNEL_HISTORY", str(d / "history.sqlite"))
    yield share
    mp.undo()


def _texts(cell, name=None) -> str:
    """All stream text of a cell's outputs (of stream `name` if given)."""
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and (name is None or o.name == name))


def _result(cell) -> str:
    got = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert len(got) == 1, cell.outputs
    return got[0].data["text/plain"]


def test_nbclient_notebook(jupyter_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "gvthread", "display_name": "GVThread",
                                 "language": "python"}
    nb.cells = [
        v4.new_markdown_cell("# gvkernel under nbclient"),
        v4.new_code_cell("x = 21\nprint('x is', x)"),
        v4.new_code_cell("x * 2"),
        v4.new_code_cell("import sys\nprint('oops', file=sys.stderr)\n"
                         "class H:\n    def _repr_html_(self):\n        return '<i>h</i>'\n"
                         "display(H())"),
        v4.new_code_cell("h = %gvspawn --name worker sum(range(1000))"),
        v4.new_code_cell("print(h.name)\nh.join()"),
        v4.new_code_cell("def f(n):\n    return n + x\nf(1)"),
    ]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="gvthread",
                                     startup_timeout=60)
    client.execute()
    cells = nb.cells
    assert _texts(cells[1], "stdout") == "x is 21\n"
    assert _result(cells[2]) == "42"
    assert "oops" in _texts(cells[3], "stderr")
    html = [o for o in cells[3].outputs if o.output_type == "display_data"]
    assert html and html[0].data["text/html"] == "<i>h</i>", cells[3].outputs
    # the spawn cell is an assignment: no result of its own, no error
    assert not [o for o in cells[4].outputs if o.output_type in ("error", "execute_result")]
    assert _texts(cells[5], "stdout").startswith("worker\n")
    assert _result(cells[5]) == "499500"
    assert _result(cells[6]) == "22"
    counts = [c.execution_count for c in cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), counts
    assert nb.metadata["language_info"]["name"] == "python"


def test_nbclient_error_stops_notebook(jupyter_path):
    """A failing cell raises CellExecutionError and later cells do not run."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from nbclient.exceptions import CellExecutionError
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [v4.new_code_cell("1/0"), v4.new_code_cell("print('never')")]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="gvthread",
                                     startup_timeout=60)
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        client.execute()
    assert not nb.cells[1].outputs


# -- (b) jupyter console in tmux --------------------------------------------------------


TMUX = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed: the jupyter console test types into a tmux "
    "pane (apt-get install tmux)")


class Tmux:
    """One detached tmux server (own socket) with one session running `command`."""

    def __init__(self, command: list[str], env: dict):
        self.socket = f"gvtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.target = "main"
        cmd = " ".join(_shquote(c) for c in command)
        subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", "new-session", "-d",
                        "-x", "200", "-y", "50", "-s", self.target, cmd],
                       check=True, env=env, timeout=30)

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True,
                              text=True, check=check, timeout=30)

    def pane(self) -> str:
        r = self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", self.target,
                      check=False)
        return r.stdout

    def pane_pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", self.target,
                             "#{pane_pid}").stdout.strip())

    def send(self, text: str, enter: bool = True) -> None:
        self.tmux("send-keys", "-t", self.target, "-l", text)
        if enter:
            self.tmux("send-keys", "-t", self.target, "Enter")

    def key(self, key: str) -> None:
        self.tmux("send-keys", "-t", self.target, key)

    def wait_for(self, needle: str, timeout: float = 30.0, line: bool = False) -> str:
        """Poll the pane until `needle` appears (with line=True: as a whole line of
        its own, not inside the echoed input); the pane text."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.pane()
            if (needle in [ln.rstrip() for ln in text.splitlines()]) if line else (
                    needle in text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} did not appear in the pane within "
                                     f"{timeout}s; pane:\n{text}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.target, check=False).returncode == 0

    def kill(self) -> None:
        self.tmux("kill-server", check=False)
        # tmux leaves its socket file behind
        path = os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}",
                            self.socket)
        try:
            os.unlink(path)
        except OSError:
            pass


def _shquote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def console_kernel(tmp_path):
    k = KernelProcess(str(tmp_path / "kernel.json"))
    try:
        k.wait_ready()
        yield k
    finally:
        k.stop()


def _console(tmp_path, kernel) -> Tmux:
    env = kernel_env(":memory:", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
                     TERM="xterm-256color")
    # The shell writes its pid, then becomes the console (exec): that pid is the
    # console's, checked for the exit.
    cmd = [sys.executable, "-m", "jupyter_console", "--existing", kernel.connection_file]
    pid_file = str(tmp_path / "console.pid")
    script = ("echo $$ > " + _shquote(pid_file) + "; exec " +
              " ".join(_shquote(c) for c in cmd))
    t = Tmux(["sh", "-c", script], env)
    t.pid_file = pid_file  # type: ignore[attr-defined]
    return t


def _console_pid(t: Tmux, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(t.pid_file, encoding="ascii") as f:  # type: ignore[attr-defined]
                return int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError("the console's pid file was not written")


def _wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


@needs_tmux
@pytest.mark.parametrize("how", ["exit", "ctrl-d"])
def test_jupyter_console(tmp_path, console_kernel, how):
    pytest.importorskip("jupyter_console")
    t = _console(tmp_path, console_kernel)
    try:
        pid = _console_pid(t)
        t.wait_for("In [1]:", timeout=60)
        t.wait_for("gvkernel", timeout=5)  # our banner, from kernel_info
        t.send("1+1")
        t.wait_for("Out[1]: 2", timeout=30)
        t.send('%gvspawn print("hello from gv")')
        t.wait_for("In [3]:", timeout=30)
        t.send("2+2")
        t.wait_for("Out[3]: 4", timeout=30)
        # a line of its own: the echoed input `%gvspawn print("hello from gv")` is not it
        text = t.wait_for("hello from gv", timeout=30, line=True)
        assert "Traceback" not in text, text
        if how == "exit":
            t.send("exit")
        else:
            t.key("C-d")
            t.wait_for("Do you really want to exit", timeout=30)
            t.send("y")
        assert _wait_gone(pid), f"the console did not exit; pane:\n{t.pane()}"
        # --existing: the console leaves, the kernel keeps running
        assert console_kernel.proc.poll() is None, console_kernel.log()
    finally:
        t.kill()
