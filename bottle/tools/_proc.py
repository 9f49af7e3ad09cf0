"""The one place external programs are run: one command type, one result type, one
stop policy.

A `Command` is a value: the tool and its arguments, built by pure functions in each
tool module (nothing runs, nothing is looked up). `run` finds the program on the
*current* PATH, passes exactly the current environment (plus what the caller adds),
captures the output and turns a non-zero exit into the tool's error type with
secret values redacted.

Children run in their own session, so a Ctrl-C at the terminal reaches only us; we
then stop the child with the stop policy (SIGINT, then SIGTERM, then SIGKILL to its
process group, each after a grace period). If we die, even by SIGKILL, the kernel
kills the child too (parent-death signal). The attached agent is the exception: it
shares our terminal.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from bottle.errors import BottleError
from cache import signals_held
from cache.record import dataclass, field

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    import subprocess
    from typing import IO, Any

# subprocess, shutil, threading and the patterns below are loaded where they are used: a
# warm no-op runs no program, and importing them is a measurable part of its time.

REDACTED = "<redacted>"
_TAIL_BYTES = 64 * 1024
GRACE = 3.0  # seconds between the stop policy's signals


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value (longest first, so overlaps can't leak) in `text`."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class ToolMissing(BottleError):
    """A program the job needs is not on PATH."""

    def __init__(self, program: str, hint: str) -> None:
        super().__init__(f"{program} not found on PATH: {hint}")
        self.program = program


class ToolError(BottleError):
    """A program exited non-zero (or timed out). Carries argv, return code and output;
    `str()` is one line with the cause, `detail()` everything (for the log)."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int,
        stdout: str = "",
        stderr: str = "",
        *,
        secrets: Iterable[str] = (),
        reason: str | None = None,
    ) -> None:
        secrets = tuple(secrets)
        self.argv = [redact(a, secrets) for a in argv]
        self.returncode = returncode
        self.stdout = redact(stdout, secrets)
        self.stderr = redact(stderr, secrets)
        self.reason = redact(reason, secrets) if reason else cause(self.stderr, self.stdout)
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        what = " ".join([Path(self.argv[0]).name, *self.argv[1:3]])
        return f"{what} failed (exit {self.returncode}): {self.reason or 'no output'}"

    def detail(self) -> str:
        """Everything, for the log: argv, return code, stdout, stderr (all redacted)."""
        return (
            f"command: {' '.join(self.argv)}\nreturn code: {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}\n"
        )


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(hints, logrus, errorish): lines that tell the user where to read more (or that a
    tool is deprecated), not what went wrong; a Go program's structured log line (skopeo's),
    whose message is what matters; a line that says something went wrong."""
    import re

    hints = re.compile(
        r"^(run '.*--help' for more information|see '.*--help'\.?|usage:.*|"
        r"for more details see .*|\s*\^+\s*|deprecated: the legacy builder.*|"
        r"install the buildx component.*|https://docs\.docker\.com/go/buildx/?)$",
        re.IGNORECASE)
    logrus = re.compile(r'^time="[^"]*" level=\w+ msg="((?:[^"\\]|\\.)*)"')
    errorish = re.compile(r"error|fatal|failed|denied|not found|no such|invalid|unable|"
                          r"could not|cannot", re.IGNORECASE)
    return hints, logrus, errorish


_MAX_CAUSE = 400


def cause(*texts: str) -> str:
    """The line (or short block) of a tool's output that says what went wrong.

    Usage hints are skipped; of a short message, everything from its first error line,
    joined into one line (a YAML error's "in file, line N" stays with it); of a long
    log, the last error line and the few lines after it."""
    hints, logrus, errorish = _patterns()
    for text in texts:
        lines = [logrus.sub(lambda m: m.group(1).replace('\\"', '"'), ln.strip())
                 for ln in text.strip().splitlines()]
        lines = [ln for ln in lines if ln and not hints.match(ln)
                 and not ln.startswith("Failed, retrying in")]
        if not lines:
            continue
        hits = [i for i, ln in enumerate(lines) if errorish.search(ln)]
        if len(lines) <= 6:  # a short message: from its first error line to its end
            block = lines[hits[0] if hits else 0:]
        else:  # a long log: the last error line and the few after it that explain it
            start = hits[-1] if hits else len(lines) - 1
            block = lines[start:start + 4]
        one = " ".join(block)
        return one if len(one) <= _MAX_CAUSE else one[: _MAX_CAUSE - 3] + "..."
    return ""


def which(program: str) -> str | None:
    """The executable `program` on the current PATH, as `shutil.which` finds it on POSIX
    (shutil itself pulls in the compression modules: a measurable part of a warm run)."""
    if os.sep in program:
        candidates = [program]
    else:
        path = os.environ.get("PATH", os.defpath)
        if not path:
            return None
        candidates = [os.path.join(d, program) for d in path.split(os.pathsep)]
    for path in dict.fromkeys(os.path.normcase(c) for c in candidates):
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


@dataclass(frozen=True)
class Tool:
    """An external CLI found on PATH by its plain name."""

    program: str
    hint: str
    error: type[ToolError] = ToolError

    def cmd(self, *args: str | Path | int) -> Command:
        """A command of this tool (nothing runs, nothing is looked up)."""
        return Command(self, tuple(str(a) for a in args))

    def which(self) -> str | None:
        return which(self.program)

    def available(self) -> bool:
        return self.which() is not None

    def require(self) -> str:
        path = self.which()
        if path is None:
            raise ToolMissing(self.program, self.hint)
        return path


@dataclass(frozen=True)
class Command:
    """A program and its arguments: a value, compared and printed as its argv."""

    tool: Tool = field(compare=False)
    args: tuple[str, ...]

    @property
    def argv(self) -> list[str]:
        return [self.tool.program, *self.args]

    def __str__(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class Result:
    """What a finished program left behind: its exit code and captured text."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    data: bytes = b""  # stdout as bytes, when the caller asked for them


def run(
    cmd: Command,
    *,
    check: bool = True,
    input: bytes | str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    progress: bool = False,
    cwd: str | Path | None = None,
    binary: bool = False,
    inherit_stdin: bool = False,
    pass_fds: Sequence[int] = (),
    meanwhile: Callable[[subprocess.Popen[bytes]], object] | None = None,
) -> Result:
    """Run `cmd`, capture its output, raise the tool's error on a non-zero exit.

    `env` is laid over the current environment. With `progress=True` and a terminal
    on stderr, the program's output is streamed there as it comes. With `binary=True`
    stdout is kept as bytes (`Result.data`). `inherit_stdin`: the program reads our stdin
    (not with `input`); `pass_fds`: our open descriptors it may read by number;
    `meanwhile`: what to do once it has started, given the process, before waiting for it
    (if that raises, the program is stopped)."""
    import subprocess

    path = cmd.tool.require()
    secrets = tuple(secrets)
    stream = progress and sys.stderr.isatty()
    data = input.encode() if isinstance(input, str) else input
    proc = _popen(
        path, cmd.argv, env=env, cwd=cwd, own_session=True,
        stdin=(subprocess.PIPE if data is not None else None if inherit_stdin
               else subprocess.DEVNULL),
        stdout=subprocess.PIPE, pass_fds=tuple(pass_fds),
        stderr=subprocess.STDOUT if stream else subprocess.PIPE,
    )
    try:
        if meanwhile is not None:
            meanwhile(proc)
        if stream:
            out, err = _tee(proc, timeout), b""
        else:
            out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise cmd.tool.error(cmd.argv, -9, secrets=secrets,
                             reason=f"timed out after {timeout:g}s") from None
    except BaseException:
        stop(proc)
        raise
    raw = out if binary and isinstance(out, bytes) else b""
    result = Result(cmd.argv, int(proc.returncode), "" if binary else _text(out), _text(err),
                    raw)
    if check and result.returncode != 0:
        raise cmd.tool.error(cmd.argv, result.returncode, result.stdout, result.stderr,
                             secrets=secrets)
    return result


def spawn(cmd: Command, *, log: IO[bytes] | None = None,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-lived server in its own session; it dies with us (even by SIGKILL)."""
    import subprocess

    return _popen(cmd.tool.require(), cmd.argv, env=env, own_session=True,
                  stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL,
                  stderr=subprocess.STDOUT)


def run_attached(cmd: Command, *, env: Mapping[str, str] | None = None) -> int:
    """Run with our stdin/stdout/stderr and terminal (an agent session); its exit code.

    It shares our process group, so a Ctrl-C reaches it as it reaches us; on our way
    out it gets the stop policy."""
    proc = _popen(cmd.tool.require(), cmd.argv, env=env, own_session=False,
                  stdin=None, stdout=None, stderr=None)
    try:
        return int(proc.wait())
    except BaseException:
        stop(proc, group=False)
        raise


def _popen(path: str, argv: Sequence[str], *, env: Mapping[str, str] | None,
           own_session: bool, cwd: str | Path | None = None,
           **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start `path` with argv[1:] and exactly the current env plus `env`."""
    import subprocess

    return subprocess.Popen(
        [path, *argv[1:]], env={**os.environ, **(env or {})},
        cwd=str(cwd) if cwd else None, start_new_session=own_session,
        preexec_fn=_die_with_parent(), **kwargs,
    )


@functools.cache
def _die_with_parent() -> Callable[[], None] | None:
    """What a child runs first: ask the kernel to SIGKILL it when we die. The C function is
    found here, once, in the parent: a child that imported ctypes itself took ~6 ms more to
    start, every time."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def child() -> None:
        prctl(pr_set_pdeathsig, sigkill)

    return child


def stop(proc: subprocess.Popen[Any], *, group: bool = True, grace: float = GRACE) -> None:
    """The stop policy: SIGINT, then SIGTERM, then SIGKILL, each after `grace` seconds;
    with `group`, to the child's whole process group, until none of it is left."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if not _running(proc, group):
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        deadline = time.monotonic() + grace
        while _running(proc, group) and time.monotonic() < deadline:
            time.sleep(0.02)
    proc.wait()


def kill(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL to the process group of a child started in its own session, unless it has
    been waited for (from any thread; whoever waits for it sees it killed)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _running(proc: subprocess.Popen[Any], group: bool) -> bool:
    if proc.poll() is None:
        return True
    if not group:
        return False
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _text(data: bytes | str | None) -> str:
    """Captured output as text, without terminal colour codes."""
    if data is None:
        return ""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    if "\x1b" not in text:
        return text
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _tee(proc: subprocess.Popen[Any], timeout: float | None) -> bytes:
    """Copy the child's merged output to our stderr line by line; keep the tail."""
    tail = bytearray()
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in iter(stdout.readline, b""):
            sys.stderr.write("  | " + line.decode(errors="replace"))
            sys.stderr.flush()
            tail.extend(line)
            del tail[:-_TAIL_BYTES]

    import threading

    reader = threading.Thread(target=pump, daemon=True)
    with signals_held():
        reader.start()
    proc.wait(timeout=timeout)
    reader.join()
    return bytes(tail)
