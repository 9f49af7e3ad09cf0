"""Long steps stream the tool's output on a terminal and stay quiet in scripts."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

CODE = """
from bottle.tools._proc import Tool, run
t = Tool("sh", "")
r = run(t.cmd("-c", "echo step one; echo step two >&2"), progress=True)
print("captured:", repr(r.stdout))
"""


def run(tmp_path: Path, *, tty: bool) -> tuple[str, str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    if not tty:
        r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env)
        return r.stdout, r.stderr
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-c", CODE], stdout=subprocess.PIPE,
                         stderr=follower, text=True, env=env)
    os.close(follower)
    out = p.communicate(timeout=60)[0]
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return out, b"".join(chunks).decode()


def test_terminal_sees_the_tools_output(tmp_path: Path) -> None:
    out, err = run(tmp_path, tty=True)
    assert "  | step one" in err and "  | step two" in err
    assert "step one" in out  # still captured for error messages


def test_scripts_see_nothing(tmp_path: Path) -> None:
    out, err = run(tmp_path, tty=False)
    assert err == ""
    assert out.strip() == "captured: 'step one\\n'"
