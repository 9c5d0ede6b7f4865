"""gvkernel's message security, driven with raw pyzmq DEALER sockets against a subprocess.

Every refused message carries an execute_request (or looks like one) whose code would
leave a side effect: a marker file created, or a line appended to a counter file. The
kernel must run none of them, count each refusal in gv_stats ("kernel" -> "security"
-> "dropped"), and still answer a properly signed request afterwards.

Also: the connection file the kernel creates is 0600 with a key and five ports;
a non-loopback --ip without a key is refused; and a --curve kernel answers only a
client holding the keys from its connection file.
"""
from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import time

import pytest
import zmq

from kernel_peers_util import DELIM, KernelProcess, RawClient, kernel_env

pytestmark = pytest.mark.timeout(120)

FUZZ_COUNT = 10_000


def _appender(path: str, tag: str = "x") -> str:
    """Code that appends one line to PATH: each run of it is counted."""
    return f"open({path!r}, 'a').write({tag!r} + '\\n')"


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    d = tmp_path_factory.mktemp("gvsec")
    k = KernelProcess(str(d / "kernel.json"), history=str(d / "history.sqlite"))
    try:
        k.wait_ready()
        yield k
    finally:
        k.stop()


@pytest.fixture
def client(kernel):
    c = RawClient(kernel.info)
    yield c
    c.close()


def _dropped(c: RawClient) -> dict:
    reply = c.request("gv_stats_request", {}, channel="control", timeout=10)
    assert reply is not None, "no gv_stats_reply"
    assert reply["content"]["status"] == "ok", reply["content"]
    sec = reply["content"]["kernel"]["security"]
    return dict(sec["dropped"])


def _executed_ok(c: RawClient, code: str) -> dict:
    reply = c.request("execute_request", {"code": code, "silent": False}, timeout=30)
    assert reply is not None, "no execute_reply"
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def _settle(c: RawClient, marker_code: str = "1") -> None:
    """A signed execute round-trip: everything sent before it has been read and, if it
    was going to run, has run (the executor runs cells in order)."""
    _executed_ok(c, marker_code)


def _assert_refused(c: RawClient, msg_id: str, frames: list, marker: str, reason: str) -> None:
    """Send frames that must not run: no reply, the marker file its code would write is
    absent once everything sent has been read, and exactly one drop counted as reason."""
    before = _dropped(c)
    c.send_frames(frames)
    assert c.recv_reply(msg_id, timeout=1.5) is None
    _settle(c)
    assert not os.path.exists(marker)
    after = _dropped(c)
    assert after.get(reason, 0) == before.get(reason, 0) + 1


def test_signed_control(client, tmp_path):
    """The side-effect code itself works when properly signed (so the refusals below
    cannot pass vacuously)."""
    counter = str(tmp_path / "count")
    _executed_ok(client, _appender(counter))
    assert _lines(counter) == ["x"]


def test_wrong_key(client, tmp_path):
    marker = str(tmp_path / "marker")
    msg_id, frames = client.frames("execute_request", {"code": _appender(marker)},
                                   key=b"not-the-key")
    _assert_refused(client, msg_id, frames, marker, "bad_signature")


def test_tampered_content(client, tmp_path):
    """A valid signature of other content, with this content: refused."""
    marker = str(tmp_path / "marker")
    _, good = client.body("execute_request", {"code": "1"})
    sig = client.sign(good)
    header, parent, metadata, _ = good
    evil = json.dumps({"code": _appender(marker)}).encode()
    msg_id = json.loads(header)["msg_id"]
    _assert_refused(client, msg_id, [DELIM, sig, header, parent, metadata, evil], marker,
                    "bad_signature")


def test_replay(client, tmp_path):
    """The exact same frames twice: executed once, the second is refused as a replay."""
    counter = str(tmp_path / "count")
    before = _dropped(client)
    msg_id, frames = client.frames("execute_request", {"code": _appender(counter)})
    client.send_frames(frames)
    reply = client.recv_reply(msg_id, timeout=30)
    assert reply is not None and reply["content"]["status"] == "ok", reply
    assert _lines(counter) == ["x"]
    client.send_frames(frames)
    assert client.recv_reply(msg_id, timeout=1.5) is None
    _settle(client)
    assert _lines(counter) == ["x"]
    after = _dropped(client)
    assert after.get("replayed", 0) == before.get("replayed", 0) + 1


def test_replay_on_other_channel(client, tmp_path):
    """A shell message replayed on control is a replay too (one history per session)."""
    counter = str(tmp_path / "count")
    msg_id, frames = client.frames("execute_request", {"code": _appender(counter)})
    client.send_frames(frames, "shell")
    assert client.recv_reply(msg_id, timeout=30) is not None
    before = _dropped(client)
    client.send_frames(frames, "control")
    assert client.recv_reply(msg_id, channel="control", timeout=1.5) is None
    after = _dropped(client)
    assert after.get("replayed", 0) == before.get("replayed", 0) + 1
    assert _lines(counter) == ["x"]


def test_unsigned(client, tmp_path):
    marker = str(tmp_path / "marker")
    msg_id, body = client.body("execute_request", {"code": _appender(marker)})
    _assert_refused(client, msg_id, [DELIM, b"", *body], marker, "unsigned")


def _fuzz_messages(rng: random.Random, client: RawClient, code: str, n: int):
    """n multipart messages that must all be refused; each would run `code` if a
    kernel took it at face value."""
    _, good = client.body("execute_request", {"code": code})
    header, parent, metadata, content = good
    sig = client.sign(good)
    junk = lambda k: bytes(rng.getrandbits(8) for _ in range(k))  # noqa: E731
    for i in range(n):
        kind = i % 10
        if kind == 0:  # random frames, random count (may be 0 frames: skip those)
            frames = [junk(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 12))]
        elif kind == 1:  # missing delimiter, otherwise a signed message
            frames = [sig, header, parent, metadata, content]
        elif kind == 2:  # too few frames after the delimiter
            frames = [DELIM, sig, header, parent][: rng.randrange(1, 4)]
        elif kind == 3:  # bad JSON, correctly signed
            body = [b"{not json", parent, metadata, content]
            frames = [DELIM, client.sign(body), *body]
        elif kind == 4:  # header not a dict, correctly signed
            h = rng.choice([b"[]", b"1", b'"execute_request"', b"null", b"true"])
            body = [h, parent, metadata, content]
            frames = [DELIM, client.sign(body), *body]
        elif kind == 5:  # content not a dict, correctly signed
            body = [header, parent, metadata, b'["code"]']
            frames = [DELIM, client.sign(body), *body]
        elif kind == 6:  # huge frame count (many empty frames), no valid signature
            frames = [DELIM, junk(64), header, parent, metadata, content,
                      *([b""] * rng.randrange(500, 3000))]
        elif kind == 7:  # random signature of the right length
            frames = [DELIM, junk(32).hex().encode(), header, parent, metadata, content]
        elif kind == 8:  # invalid UTF-8 in a signed body
            body = [b"\xff\xfe" + junk(8), parent, metadata, content]
            frames = [DELIM, client.sign(body), *body]
        else:  # header with no msg_type, correctly signed
            body = [json.dumps({"msg_id": f"fz{i}", "session": "s"}).encode(), parent,
                    metadata, content]
            frames = [DELIM, client.sign(body), *body]
        yield frames


def test_fuzz_shell_and_control(client, tmp_path):
    """10,000 random or malformed messages over shell and control: none runs, every one
    is counted, and the kernel still answers a signed kernel_info."""
    marker = str(tmp_path / "fuzzed")
    rng = random.Random(20240601)
    before = _dropped(client)
    sent = 0
    for i, frames in enumerate(_fuzz_messages(rng, client, _appender(marker), FUZZ_COUNT)):
        client.send_frames(frames, "shell" if i % 2 == 0 else "control")
        sent += 1
    # Nothing answers a refused message: drain what may have come back anyway.
    for ch in ("shell", "control"):
        s = client.sockets[ch]
        while s.poll(200):
            frames = s.recv_multipart()
            pytest.fail(f"a fuzzed message got a reply on {ch}: {frames[:6]!r}")
    reply = client.request("kernel_info_request", {}, timeout=30)
    assert reply is not None and reply["content"]["status"] == "ok"
    reply = client.request("kernel_info_request", {}, channel="control", timeout=30)
    assert reply is not None and reply["content"]["status"] == "ok"
    _settle(client)
    assert not os.path.exists(marker)
    # All 10,000 were counted, none as received (shell and control both read them all:
    # the replies above come after them on each socket).
    deadline = time.monotonic() + 30
    while True:
        after = _dropped(client)
        total = sum(after.values()) - sum(before.values())
        if total >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total == sent, (before, after)
    assert after.get("malformed", 0) > before.get("malformed", 0)
    assert after.get("bad_signature", 0) > before.get("bad_signature", 0)


def test_still_executes_after_everything(client, tmp_path):
    counter = str(tmp_path / "count")
    _executed_ok(client, _appender(counter, "after"))
    assert _lines(counter) == ["after"]


# -- connection files and startup checks ---------------------------------------------


def test_created_connection_file(tmp_path):
    path = str(tmp_path / "new" / "kernel-new.json")
    assert not os.path.exists(path)
    k = KernelProcess(path)
    try:
        info = k.wait_ready()
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, oct(mode)
        assert isinstance(info.get("key"), str) and len(info["key"]) >= 32
        ports = [info[p] for p in ("shell_port", "iopub_port", "stdin_port", "control_port",
                                   "hb_port")]
        assert all(isinstance(p, int) and 0 < p < 65536 for p in ports), ports
        assert len(set(ports)) == 5
        assert info.get("signature_scheme") == "hmac-sha256"
        assert info.get("transport") == "tcp"
        # a client with that key is served; with another key it is not
        c = RawClient(info)
        try:
            assert c.request("kernel_info_request", {}, timeout=10) is not None
        finally:
            c.close()
        bad = RawClient(info, key=b"0" * 32)
        try:
            assert bad.request("kernel_info_request", {}, timeout=1.0) is None
        finally:
            bad.close()
    finally:
        k.stop()


def test_remote_ip_without_key_is_refused(tmp_path):
    path = str(tmp_path / "nokey.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"ip": "127.0.0.1", "transport": "tcp", "key": "",
                   "signature_scheme": "hmac-sha256", "shell_port": 0, "iopub_port": 0,
                   "stdin_port": 0, "control_port": 0, "hb_port": 0}, f)
    r = subprocess.run([sys.executable, "-m", "gvkernel", "--ip", "0.0.0.0", "-f", path],
                       capture_output=True, text=True, timeout=60,
                       env=kernel_env(":memory:"))
    assert r.returncode != 0
    assert "key" in r.stderr and "0.0.0.0" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr


# -- CurveZMQ ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curve_kernel(tmp_path_factory):
    d = tmp_path_factory.mktemp("gvcurve")
    k = KernelProcess(str(d / "curve.json"), args=("--curve",))
    try:
        _wait_curve(k)
        yield k
    finally:
        k.stop()


def _wait_curve(k: KernelProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if k.proc.poll() is not None:
            raise RuntimeError(f"gvkernel --curve exited: {k.log()}")
        try:
            with open(k.connection_file, encoding="utf-8") as f:
                info = json.load(f)
            if info.get("curve_server_public") and info.get("shell_port"):
                k.info = info
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError(f"no curve connection file: {k.log()}")
    c = RawClient(k.info, curve=k.info)
    try:
        while time.monotonic() < deadline:
            if c.request("kernel_info_request", {}, timeout=1.0) is not None:
                return
        raise RuntimeError(f"curve kernel did not answer: {k.log()}")
    finally:
        c.close()


def test_curve_file_holds_keys(curve_kernel):
    info = curve_kernel.info
    for k in ("curve_server_public", "curve_server_secret", "curve_client_public",
              "curve_client_secret"):
        assert isinstance(info.get(k), str) and len(info[k]) == 40, k
    assert stat.S_IMODE(os.stat(curve_kernel.connection_file).st_mode) == 0o600


def test_curve_right_keys(curve_kernel):
    c = RawClient(curve_kernel.info, curve=curve_kernel.info)
    try:
        reply = c.request("kernel_info_request", {}, timeout=10)
        assert reply is not None and reply["content"]["status"] == "ok"
        reply = c.request("kernel_info_request", {}, channel="control", timeout=10)
        assert reply is not None and reply["content"]["status"] == "ok"
    finally:
        c.close()


def test_curve_wrong_client_keypair(curve_kernel):
    pub, sec = zmq.curve_keypair()
    keys = dict(curve_kernel.info, curve_client_public=pub.decode(),
                curve_client_secret=sec.decode())
    c = RawClient(curve_kernel.info, curve=keys)
    try:
        assert c.request("kernel_info_request", {}, timeout=2.0) is None
        assert c.request("kernel_info_request", {}, channel="control", timeout=2.0) is None
    finally:
        c.close()


def test_curve_wrong_server_key(curve_kernel):
    pub, _ = zmq.curve_keypair()
    keys = dict(curve_kernel.info, curve_server_public=pub.decode())
    c = RawClient(curve_kernel.info, curve=keys)
    try:
        assert c.request("kernel_info_request", {}, timeout=2.0) is None
    finally:
        c.close()


def test_curve_plaintext_client(curve_kernel):
    """No CURVE at all, even with the right HMAC key: nothing."""
    c = RawClient(curve_kernel.info)
    try:
        assert c.request("kernel_info_request", {}, timeout=2.0) is None
    finally:
        c.close()
