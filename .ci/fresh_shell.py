"""The README's first command on a fresh machine, in a real terminal.

Usage: python3 .ci/fresh_shell.py TREE

TREE is a copy of the project.  A new virtual environment with no extras stands in for a
fresh machine: its bin/ comes first on PATH, so `python3` is the venv's.  The first command
of the README's first ``sh`` block is typed verbatim into bash in a pty (pexpect, from the
test extra of the Python that runs this script); then gvshell must show its prompt,
evaluate 6*7 and leave on Ctrl-D.  Exits non-zero, with the terminal's text, otherwise.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pexpect

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()=>][0-9A-Za-z]?")
INSTALL_WAIT = 900.0  # building the native core and installing IPython on a 2-core box
WAIT = 30.0


def readme_first_command(readme: str) -> str:
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    if not block:
        raise SystemExit("README.md has no ```sh block")
    return block.group(1).strip().splitlines()[0]


def main() -> int:
    tree = os.path.abspath(sys.argv[1])
    with open(os.path.join(tree, "README.md"), encoding="utf-8") as f:
        command = readme_first_command(f.read())
    if "gvshell" not in command:
        raise SystemExit(f"the README's first command does not start gvshell: {command!r}")
    venv = os.path.join(tree, ".venv-fresh")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYENV_VERSION")}
    env.update(PATH=os.path.join(venv, "bin") + os.pathsep + env.get("PATH", ""),
               VIRTUAL_ENV=venv, TERM="xterm-256color", PIP_DISABLE_PIP_VERSION_CHECK="1")
    print(f"-- in a fresh venv, typed into a terminal: {command}", flush=True)
    term = pexpect.spawn("bash", ["--norc", "--noprofile"], cwd=tree, env=env,
                         dimensions=(50, 200), encoding="utf-8", codec_errors="replace")
    raw = ""

    def expect(pattern: str, timeout: float) -> None:
        nonlocal raw
        deadline = time.monotonic() + timeout
        while not re.search(pattern, ANSI.sub("", raw).replace("\r", "")):
            if time.monotonic() > deadline or (not term.isalive() and term.eof()):
                tail = ANSI.sub("", raw).replace("\r", "")[-4000:]
                raise SystemExit(f"{pattern!r} not seen in {timeout:.0f} s; the terminal:\n{tail}")
            try:
                raw += term.read_nonblocking(65536, 0.2)
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                time.sleep(0.2)

    term.send(f"{command}; echo \"gvshell-exit=$?\"\r")
    expect(r"In \[1\]: ", INSTALL_WAIT)
    term.send("6*7\r")
    expect(r"Out\[1\]: 42", WAIT)
    expect(r"In \[2\]: ", WAIT)
    term.send("\x04")
    expect(r"Do you really want to exit", WAIT)
    term.send("y\r")
    expect(r"gvshell-exit=(\d+)", WAIT)
    status = re.search(r"gvshell-exit=(\d+)", ANSI.sub("", raw)).group(1)
    term.sendline("exit")
    term.close(force=True)
    if status != "0":
        raise SystemExit(f"gvshell exited with status {status}")
    print("-- gvshell started, evaluated 6*7 = 42 and left (status 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
