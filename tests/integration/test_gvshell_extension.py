"""`%load_ext gvshell` in a real IPython subprocess: the gv magics on an in-process runtime,
and `%gvconnect` to a gvkernel started by the test."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("IPython")


def run_ipython(tmp_path, script: str, timeout: float = 60) -> str:
    path = tmp_path / "session.ipy"
    path.write_text(textwrap.dedent(script))
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                           "--HistoryManager.enabled=False", str(path)],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_extension_in_process(tmp_path):
    out = run_ipython(tmp_path, """
        %load_ext gvshell
        h = %gvspawn --name adder sum(range(10))
        print("JOINED", h.join())
        s = %gvspawn --name sleeper --priority high import gvthread; gvthread.sleep(30)
        import time; time.sleep(0.2)
        %gvps
        print("STACK-OF", s.id)
        get_ipython().run_line_magic("gvstack", str(s.id))
        get_ipython().run_line_magic("gvcancel", str(s.id))
        try:
            s.join(timeout=5)
        except BaseException as e:
            print("SLEEPER", type(e).__name__)
        %gvstats
        import gvthread
        c = gvthread.Channel(4)
        c.send("queued-item")
        %gvchan
        print("RUNTIME", type(gvruntime).__name__)
        try:
            get_ipython().run_line_magic("gvps", "--bogus")
        except Exception as e:
            print("BAD-INPUT", e)
        print("END")
    """)
    assert "JOINED 45" in out
    ps = out[out.index("ID  NAME"):]
    assert "sleeper" in ps and "blocked" in ps and "high" in ps.split("sleeper")[1].splitlines()[0]
    assert "gvthread.sleep(30)" in out  # the stack shows the sleeping line
    assert "cancelled" in out and "SLEEPER Cancelled" in out
    assert "switches" in out.lower() and "GVThreads:" in out
    assert "'queued-item'" in out
    assert "RUNTIME Runtime" in out
    assert "BAD-INPUT usage: %gvps" in out  # bad input: a clear error, the session goes on
    assert "END" in out


@pytest.fixture
def kernel(tmp_path):
    cf = tmp_path / "kernel.json"
    env = dict(os.environ, GVKERNEL_HISTORY=str(tmp_path / "hist.sqlite"))
    proc = subprocess.Popen([sys.executable, "-m", "gvkernel", "-f", str(cf), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while not cf.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cf.exists(), "kernel did not write its connection file"
    yield str(cf)
    proc.kill()
    proc.wait(10)


def test_extension_gvconnect_remote_kernel(tmp_path, kernel):
    from jupyter_client import BlockingKernelClient
    kc = BlockingKernelClient(connection_file=kernel)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=20)
        # a GVThread of another client, which the extension must see
        kc.execute_interactive("import gvthread\nh = %gvspawn --name other-client "
                               "gvthread.sleep(60)", timeout=20)
        out = run_ipython(tmp_path, f"""
            %load_ext gvshell
            %gvconnect {kernel}
            %gvspawn --name remote-hello print("hello from the kernel")
            import time; time.sleep(1.0)
            %gvps
            %gvstats
            %gvconnect
            %gvps
            print("END")
        """)
        assert "connected to the kernel" in out
        assert "started in the kernel" in out
        assert "hello from the kernel" in out  # printed as it arrived, from iopub
        remote_ps, local_ps = out.split("in-process runtime")
        assert "other-client" in remote_ps
        assert "other-client" not in local_ps  # back on the in-process runtime
        assert "END" in out
    finally:
        kc.stop_channels()


def test_remote_backend_forgets_ended_spawns_and_closes_after_printer(kernel):
    """RemoteBackend follows a spawn's output until its GVThread's exit (then forgets the
    id), follows at most MAX_MINE at once, and close() ends the printer thread before it
    closes the sockets the printer reads."""
    from gvshell.extension import RemoteBackend
    b = RemoteBackend(kernel)
    try:
        spawn = {"code": "print('done')", "name": "quick", "priority": "normal"}
        assert b.request("gv_spawn_request", spawn, 10.0)["status"] == "ok"
        deadline = time.monotonic() + 10
        while b.following() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.following() == 0, "an ended GVThread's spawn is still followed"
        b.MAX_MINE = 3
        for i in range(5):
            r = b.request("gv_spawn_request", {"code": "import gvthread; gvthread.sleep(60)",
                                               "name": f"sleeper{i}"}, 10.0)
            assert r["status"] == "ok", r
        assert b.following() == 3
    finally:
        b.close()
    assert not b._printer.is_alive(), "close() left the printer reading closed sockets"
