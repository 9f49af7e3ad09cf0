"""The runner: PATH and env read at call time, clean errors, secrets redacted, kills."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bottle.tools._proc import REDACTED, Tool, ToolError, ToolMissing, cause, run


def script(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    p = bin_dir / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return d


def test_a_command_is_a_value_needing_nothing_installed() -> None:
    tool = Tool("surely-not-installed-xyz", "install it")
    cmd = tool.cmd("a", Path("/b"), 3)
    assert cmd.argv == ["surely-not-installed-xyz", "a", "/b", "3"]
    assert cmd == tool.cmd("a", "/b", "3")


def test_missing_tool_names_it_and_how_to_get_it() -> None:
    tool = Tool("surely-not-installed-xyz", "apt-get install xyz")
    with pytest.raises(ToolMissing, match="surely-not-installed-xyz not found on PATH: apt-get"):
        run(tool.cmd("x"))


def test_path_and_env_are_read_when_run(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script(bin_dir, "late-tool", 'echo "$LATE_VAR"\n')
    monkeypatch.setenv("LATE_VAR", "seen")
    tool = Tool("late-tool", "")
    assert run(tool.cmd()).stdout == "seen\n"
    assert run(tool.cmd(), env={"LATE_VAR": "over"}).stdout == "over\n"


def test_a_variable_unset_since_first_use_does_not_reach_children(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    script(bin_dir, "show-env", 'echo "[$REVOKED_TOKEN]"\n')
    tool = Tool("show-env", "")
    monkeypatch.setenv("REVOKED_TOKEN", "old")
    assert run(tool.cmd()).stdout == "[old]\n"
    monkeypatch.delenv("REVOKED_TOKEN")
    assert run(tool.cmd()).stdout == "[]\n"


def test_error_carries_argv_code_output_and_one_line(bin_dir: Path) -> None:
    script(bin_dir, "failing", 'echo out; echo "first\nError: manifest unknown" >&2; exit 3\n')
    tool = Tool("failing", "")
    with pytest.raises(ToolError) as err:
        run(tool.cmd("pull", "img:bad"))
    e = err.value
    assert e.returncode == 3 and e.stdout == "out\n" and "manifest unknown" in e.stderr
    assert e.argv[1:] == ["pull", "img:bad"]
    assert str(e) == "failing pull img:bad failed (exit 3): Error: manifest unknown"
    assert "\n" not in str(e)


def test_secrets_are_redacted_everywhere(bin_dir: Path) -> None:
    script(bin_dir, "leaky", 'echo "token is $2" >&2; exit 1\n')
    tool = Tool("leaky", "")
    with pytest.raises(ToolError) as err:
        run(tool.cmd("--token", "s3cr3t-value"), secrets=["s3cr3t-value"])
    text = str(err.value) + err.value.detail() + repr(err.value.args)
    assert "s3cr3t-value" not in text
    assert REDACTED in err.value.stderr and REDACTED in err.value.argv


def test_timeout_kills_the_child(bin_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script(bin_dir, "hangs", f"echo $$ > {pidfile}\nexec sleep 30\n")
    tool = Tool("hangs", "")
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        run(tool.cmd(), timeout=0.5)
    assert time.monotonic() - started < 10
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_check_false_returns_the_code(bin_dir: Path) -> None:
    script(bin_dir, "seven", "exit 7\n")
    tool = Tool("seven", "")
    assert run(tool.cmd(), check=False).returncode == 7


def test_input_reaches_stdin(bin_dir: Path) -> None:
    script(bin_dir, "catty", "cat\n")
    tool = Tool("catty", "")
    assert run(tool.cmd(), input="secret via stdin").stdout == "secret via stdin"


def test_timeout_stops_the_whole_process_group(bin_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script(bin_dir, "forks", f"sleep 30 & echo $! > {pidfile}\nwait\n")
    with pytest.raises(ToolError, match="timed out"):
        run(Tool("forks", "").cmd(), timeout=0.5)
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_children_run_in_their_own_session(bin_dir: Path) -> None:
    """A Ctrl-C at the terminal reaches us, not our tools: we stop them ourselves."""
    script(bin_dir, "sid", "ps -o sid= -p $$\n")
    sid = int(run(Tool("sid", "").cmd()).stdout.strip())
    assert sid != os.getsid(0)


@pytest.mark.parametrize("how", ["run", "spawn"])
def test_a_child_dies_with_us_even_by_sigkill(bin_dir: Path, tmp_path: Path, how: str) -> None:
    """Each child asks the kernel for SIGKILL when its parent dies, whichever way we
    start it: nothing of ours outlives a `kill -9`."""
    import signal
    import subprocess
    import sys

    pid_file = tmp_path / "pid"
    script(bin_dir, "stay", f'echo $$ > "{pid_file}"\nexec sleep 60\n')
    code = ("import sys, time\nfrom bottle.tools._proc import Tool, run, spawn\n"
            f"{how}(Tool('stay', '').cmd())\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], env={
        **os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and b"Z" not in _state(child):
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1][:3]
    except OSError:
        return b"Z"


@pytest.mark.parametrize(("stderr", "expected"), [
    ("docker: Error response from daemon: network bogusnet not found.\n"
     "Run 'docker run --help' for more information\n",
     "docker: Error response from daemon: network bogusnet not found."),
    ("docker: Error response from daemon: unable to find user node: no matching entries in "
     "passwd file.\nSee 'docker run --help'.\n",
     "docker: Error response from daemon: unable to find user node: no matching entries in "
     "passwd file."),
    ("ERROR: yaml.scanner.ScannerError: while scanning a simple key\n"
     '  in "./stack.yaml", line 4, column 1\ncould not find expected \':\'\n'
     '  in "./stack.yaml", line 5, column 1\n',
     'ERROR: yaml.scanner.ScannerError: while scanning a simple key in "./stack.yaml", '
     "line 4, column 1 could not find expected ':' in \"./stack.yaml\", line 5, column 1"),
    ("step 1\nstep 2\nsomething odd happened\n", "step 1 step 2 something odd happened"),
    ("".join(f"Step {i}/9 : RUN x\n" for i in range(9)) + "ERROR: failed to solve\n"
     "  exit code: 2\n", "ERROR: failed to solve exit code: 2"),
    ("yaml.scanner.ScannerError: while scanning a simple key\n"
     '  in "./compose.yml", line 4, column 3\ncould not find expected \':\'\n',
     'yaml.scanner.ScannerError: while scanning a simple key in "./compose.yml", line 4, '
     "column 3 could not find expected ':'"),
    ("DEPRECATED: The legacy builder is deprecated and will be removed in a future release.\n"
     "            Install the buildx component to build images with BuildKit:\n"
     "            https://docs.docker.com/go/buildx/\n\n"
     "The command '/bin/sh -c false' returned a non-zero code: 1\n",
     "The command '/bin/sh -c false' returned a non-zero code: 1"),
    ('time="2026-11-22T04:00:00Z" level=fatal msg="initializing source docker://x: pinging '
     'container registry 127.0.0.1:9: Get \\"http://127.0.0.1:9/v2/\\": connection refused"\n',
     'initializing source docker://x: pinging container registry 127.0.0.1:9: Get '
     '"http://127.0.0.1:9/v2/": connection refused'),
    ("", ""),
])
def test_the_one_line_carries_the_cause_not_the_usage_hint(stderr: str, expected: str) -> None:
    assert cause(stderr) == expected


def test_which_finds_what_shutil_which_finds(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Differential: generated PATHs over executables, plain files, directories and
    symlinks (dangling too), against shutil.which itself."""
    import random
    import shutil

    from bottle.tools._proc import which

    rng = random.Random(7)
    dirs = [tmp_path / f"d{i}" for i in range(5)]
    for d in dirs:
        d.mkdir()
    names = ["tool", "other", "x y", "dir"]
    monkeypatch.chdir(dirs[2])  # an empty PATH entry is the working directory
    for _case in range(150):
        for d in dirs:
            for n in names:
                p = d / n
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()
                elif p.is_symlink() or p.exists():
                    p.unlink()
                r = rng.random()
                if r < 0.3:
                    p.write_text("")
                    p.chmod(0o755 if r < 0.2 else 0o644)
                elif r < 0.35:
                    p.mkdir()
                elif r < 0.4:
                    p.symlink_to("/bin/sh")
                elif r < 0.42:
                    p.symlink_to("/nonexistent")
        path = os.pathsep.join(rng.choice([*map(str, dirs), "", "/nonexistent"])
                               for _ in range(rng.randint(0, 5)))
        monkeypatch.setenv("PATH", path)
        for n in [*names, str(dirs[1] / "tool")]:
            assert which(n) == shutil.which(n, path=path), (path, n)
