"""gvshell attached over TCP to a `--curve` gvkernel in another network namespace.

The test makes two network namespaces (`ip netns`) joined by a veth pair: the kernel
listens on 10.231.N.1 in one, every client runs in the other (`ip netns exec`), at
10.231.N.2. Then:

- with the connection file's keys, gvshell works: a cell, %gvspawn output, %gvps; Ctrl-D
  leaves at once and the kernel keeps running; the same through --ip, the ports, --key
  and --curve-keys, without the connection file;
- with a wrong client key pair, or a wrong server key, gvshell prints "no answer from the
  kernel (wrong keys, or not reachable)" and exits non-zero within its --timeout;
- a wrong-key CurveZMQ client, a plain client (jupyter_client's BlockingKernelClient, the
  file without its curve fields), and right-key clients on the loopback of the root
  namespace and of the kernel's own namespace all get no reply in 2 s, and the code they
  sent (each creates a marker file) never runs.

Needs root and a kernel that permits `ip netns add`: skipped, with the reason, otherwise.
Teardown kills every process left in the two namespaces and deletes them (the veth pair
goes with them), whether the tests passed or not.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import zmq

pexpect = pytest.importorskip("pexpect")
from shell_util import WAIT, Term  # noqa: E402

pytestmark = pytest.mark.timeout(120)

HERE = os.path.dirname(os.path.abspath(__file__))
NO_ANSWER = "no answer from the kernel (wrong keys, or not reachable)"
BAD_TIMEOUT = 3  # gvshell --timeout for the wrong-key runs

# Run in a namespace as `python probe.py MODE FILE TIMEOUT CODE [IP]`: sends an
# execute_request of CODE (MODE "curve": kernel_peers_util.RawClient with the file's curve
# keys, if any; "plain": jupyter_client's BlockingKernelClient, which knows nothing of
# CURVE) and prints {"answered": bool} after a reply or TIMEOUT seconds.
PROBE = r'''
import json, queue, sys, time
mode, path, timeout, code = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
with open(path, encoding="utf-8") as f:
    info = json.load(f)
if len(sys.argv) > 5:
    info["ip"] = sys.argv[5]
content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
           "allow_stdin": False}
if mode == "curve":
    from kernel_peers_util import RawClient
    c = RawClient(info, curve=info if info.get("curve_server_public") else None)
    try:
        reply = c.request("execute_request", content, timeout=timeout)
    finally:
        c.close()
    print(json.dumps({"answered": reply is not None,
                      "status": reply and reply["content"].get("status")}))
else:
    from jupyter_client.blocking import BlockingKernelClient
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    kc.execute(code)
    kc.kernel_info()
    try:
        kc.get_shell_msg(timeout=timeout)
        answered = True
    except queue.Empty:
        answered = False
    kc.stop_channels()
    print(json.dumps({"answered": answered}))
'''


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20,
                          check=check)


def _netns_unavailable() -> str:
    """Why namespaces cannot be made here, or "" when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to make network namespaces (ip netns)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    return ""


class Net:
    """Two namespaces: `kns` (the kernel, kernel_ip) and `cns` (clients, client_ip)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.kns, self.cns = f"gvk-{tag}", f"gvc-{tag}"
        n = random.randrange(1, 255)
        self.kernel_ip, self.client_ip = f"10.231.{n}.1", f"10.231.{n}.2"
        self.made: list[str] = []

    def setup(self) -> None:
        r = _ip("netns", "add", self.kns, check=False)
        if r.returncode != 0:
            pytest.skip(f"`ip netns add` is not permitted here: {r.stderr.strip()}")
        self.made.append(self.kns)
        _ip("netns", "add", self.cns)
        self.made.append(self.cns)
        # both ends made inside the namespaces: nothing is ever left in the root one
        r = _ip("-n", self.kns, "link", "add", "veth0", "type", "veth", "peer", "name",
                "veth0", "netns", self.cns, check=False)
        if r.returncode != 0:
            pytest.skip(f"cannot make a veth pair between namespaces: {r.stderr.strip()}")
        for ns, addr in ((self.kns, self.kernel_ip), (self.cns, self.client_ip)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "veth0")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", "veth0", "up")

    def exec(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def teardown(self) -> None:
        for ns in self.made:
            r = _ip("netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
        for ns in self.made:
            for _ in range(50):  # a killed process may hold the namespace a moment
                if _ip("netns", "del", ns, check=False).returncode == 0:
                    break
                time.sleep(0.1)


@pytest.fixture(scope="module")
def net():
    why = _netns_unavailable()
    if why:
        pytest.skip(why)
    n = Net()
    try:
        n.setup()
        yield n
    finally:
        n.teardown()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("gvremote")
    e = dict(os.environ)
    e.update(JUPYTER_RUNTIME_DIR=str(d), GVSHELL_HISTORY=str(d / "shell_hist"),
             GVKERNEL_HISTORY=str(d / "kernel_hist.sqlite"), PROMPT_TOOLKIT_NO_CPR="1",
             TERM="xterm", COLUMNS="200", LINES="50",
             PYTHONPATH=os.pathsep.join([HERE, *filter(None, [os.environ.get("PYTHONPATH")])]))
    e.pop("JUPYTER_PATH", None)
    e.pop("GVSHELL_KEY", None)
    (d / "probe.py").write_text(PROBE, encoding="utf-8")
    e["_GV_TMP"] = str(d)
    return e


class Kernel:
    def __init__(self, net: Net, env: dict):
        d = env["_GV_TMP"]
        self.path = os.path.join(d, "kernel.json")
        self.log_path = os.path.join(d, "kernel.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                net.exec(net.kns, sys.executable, "-m", "gvkernel", "-f", self.path, "--ip",
                         net.kernel_ip, "--curve", "--workers", "2"),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)
        self.info: dict = {}

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_file(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gvkernel exited {self.proc.returncode}: {self.log()}")
            try:
                with open(self.path, encoding="utf-8") as f:
                    info = json.load(f)
                if info.get("curve_server_public") and all(
                        info.get(p) for p in ("shell_port", "iopub_port", "stdin_port",
                                              "control_port", "hb_port")):
                    self.info = info
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gvkernel wrote no curve connection file: {self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def kernel(net, env):
    k = Kernel(net, env)
    try:
        k.wait_file()
        # ready: a right-key client in the client namespace is answered
        deadline = time.monotonic() + 30
        while not _probe(net, env, net.cns, "curve", k.path, 1.0, "1")["answered"]:
            if time.monotonic() > deadline or k.proc.poll() is not None:
                raise RuntimeError(f"the kernel does not answer over CURVE: {k.log()}")
        yield k
    finally:
        k.stop()


def _probe_cmd(net: Net, env: dict, ns: str | None, mode: str, path: str, timeout: float,
               code: str, ip: str | None = None) -> list[str]:
    cmd = [sys.executable, os.path.join(env["_GV_TMP"], "probe.py"), mode, path,
           str(timeout), code, *([ip] if ip else [])]
    return net.exec(ns, *cmd) if ns else cmd


def _result(out: str, err: str, rc: int) -> dict:
    assert rc == 0, f"probe failed ({rc}): {err[-2000:]}"
    return json.loads(out.strip().splitlines()[-1])


def _probe(net: Net, env: dict, ns: str | None, mode: str, path: str, timeout: float,
           code: str, ip: str | None = None) -> dict:
    r = subprocess.run(_probe_cmd(net, env, ns, mode, path, timeout, code, ip),
                       capture_output=True, text=True, env=env, timeout=timeout + 30)
    return _result(r.stdout, r.stderr, r.returncode)


def _with(info: dict, path: str, **fields) -> str:
    """Write a 0600 copy of info with fields changed (None: removed); returns path."""
    new = {k: v for k, v in {**info, **fields}.items() if v is not None}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(new, f)
    return path


def _keypair() -> tuple[str, str]:
    pub, sec = zmq.curve_keypair()
    return pub.decode(), sec.decode()


def test_gvshell_with_the_keys(net, env, kernel):
    t = Term(["-f", kernel.path, "--timeout", str(WAIT)], env,
             prefix=("ip", "netns", "exec", net.cns))
    try:
        t.expect(r"gvshell: attached to gvkernel")
        t.expect(r"In \[1\]: ")
        t.run_until("1+1", r"Out\[1\]: 2\b")
        mark = t.pos  # the GVThread's output and the cell's Out[] may come in either order
        m = t.run_until('%gvspawn --name remote print("hi over curve")', r"<gvthread\.Handle id=(\d+)")
        end, t.pos = t.pos, mark
        t.expect(rf"\[{m.group(1)} remote\] hi over curve")
        t.pos = max(end, t.pos)
        t.run_until("import time")
        m = t.run_until("%gvspawn --name remote_sleeper time.sleep(60)", r"<gvthread\.Handle id=(\d+)")
        t.child.send("%gvps\r")
        t.expect(rf"\n{m.group(1)}\s+remote_sleeper\s")
        t.expect(r"In \[\d+\]: ")
        # attached, not ours: Ctrl-D leaves without a question, the kernel keeps running
        t.child.send("\x04")
        assert t.wait_exit() == 0, t.text()[-2000:]
    finally:
        t.close()
    assert kernel.proc.poll() is None, kernel.log()
    assert _probe(net, env, net.cns, "curve", kernel.path, WAIT, "1")["answered"]


def test_gvshell_without_connection_file(net, env, kernel, tmp_path):
    """--ip, the five ports and --key, with the curve keys from --curve-keys."""
    info = kernel.info
    keys = _with({k: info[k] for k in ("curve_server_public", "curve_client_public",
                                       "curve_client_secret")}, str(tmp_path / "keys.json"))
    args = ["--ip", net.kernel_ip, "--key", info["key"], "--curve-keys", keys,
            "--timeout", str(WAIT)]
    for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
        args += ["--" + name.replace("_", "-"), str(info[name])]
    t = Term(args, env,
             prefix=("ip", "netns", "exec", net.cns))
    try:
        t.expect(r"In \[\d+\]: ")
        t.run_until("2+3", r"Out\[\d+\]: 5\b")
        t.child.send("\x04")
        assert t.wait_exit() == 0, t.text()[-2000:]
    finally:
        t.close()
    assert kernel.proc.poll() is None, kernel.log()


@pytest.mark.parametrize("wrong", ["client_keypair", "server_key"])
def test_gvshell_with_wrong_keys(net, env, kernel, tmp_path, wrong):
    pub, sec = _keypair()
    if wrong == "client_keypair":
        fields = {"curve_client_public": pub, "curve_client_secret": sec}
    else:
        fields = {"curve_server_public": pub}
    bad = _with(kernel.info, str(tmp_path / "bad.json"), **fields)
    start = time.monotonic()
    t = Term(["-f", bad, "--timeout", str(BAD_TIMEOUT)], env,
             prefix=("ip", "netns", "exec", net.cns))
    try:
        t.expect(re.escape(NO_ANSWER), timeout=BAD_TIMEOUT + WAIT)
        status = t.wait_exit()
    finally:
        t.close()
    took = time.monotonic() - start
    assert status != 0, t.text()[-2000:]
    assert "In [" not in t.text(), t.text()[-2000:]
    assert took < BAD_TIMEOUT + 10, f"gvshell took {took:.1f} s to give up"
    assert kernel.proc.poll() is None, kernel.log()
    assert _probe(net, env, net.cns, "curve", kernel.path, WAIT, "1")["answered"]


def test_nothing_else_gets_through(net, env, kernel, tmp_path):
    """Wrong CURVE key pair, plain TCP, and right keys from either loopback: no reply
    in 2 s, and the code sent (a marker file each) never runs."""
    info = kernel.info
    pub, sec = _keypair()
    wrong = _with(info, str(tmp_path / "wrong.json"), curve_client_public=pub,
                  curve_client_secret=sec)
    plain = _with(info, str(tmp_path / "plain.json"), curve_server_public=None,
                  curve_server_secret=None, curve_client_public=None,
                  curve_client_secret=None)
    cases = {
        "wrong client keypair": (net.cns, "curve", wrong, None),
        "plain client": (net.cns, "plain", plain, None),
        "root namespace loopback": (None, "curve", kernel.path, "127.0.0.1"),
        "kernel namespace loopback": (net.kns, "curve", kernel.path, "127.0.0.1"),
    }
    markers = {name: str(tmp_path / f"marker-{i}") for i, name in enumerate(cases)}
    procs = {}
    for name, (ns, mode, path, ip) in cases.items():
        code = f"open({markers[name]!r}, 'w').close()"
        procs[name] = subprocess.Popen(_probe_cmd(net, env, ns, mode, path, 2.0, code, ip),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=env)
    results = {}
    for name, p in procs.items():
        try:
            out, err = p.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        results[name] = _result(out, err, p.returncode)
    answered = [name for name, r in results.items() if r["answered"]]
    assert not answered, f"answered: {answered}"
    # a right-key round trip after them: anything of theirs that reached the kernel ran
    assert _probe(net, env, net.cns, "curve", kernel.path, WAIT, "1")["answered"]
    ran = [name for name, path in markers.items() if os.path.exists(path)]
    assert not ran, f"code ran for: {ran}"
    assert kernel.proc.poll() is None, kernel.log()
