"""The one place external programs are run.

Every tool module builds plumbum commands against the program's plain name (so
`.formulate()` gives the argv without running or even finding anything) and runs
them through `Tool.run`, which finds the program on the *current* PATH, passes
exactly the *current* environment (plumbum's own popen would merge in its snapshot
of the environment from import time), kills the child on Ctrl-C or timeout, and
turns a non-zero exit into the tool's error type with secret values redacted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bottle.errors import BottleError

REDACTED = "<redacted>"
_TAIL_BYTES = 64 * 1024


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
    """A program exited non-zero (or timed out). Carries argv, return code and output."""

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
        self.reason = redact(reason, secrets) if reason else _last_line(self.stderr, self.stdout)
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        head = [Path(self.argv[0]).name, *self.argv[1:3]]
        what = " ".join(head)
        return f"{what} failed (exit {self.returncode}): {self.reason or 'no output'}"

    def detail(self) -> str:
        """Everything, for logs and debugging: argv, return code, stdout, stderr."""
        return (
            f"command: {' '.join(self.argv)}\nreturn code: {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


def _last_line(*texts: str) -> str:
    for text in texts:
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return ""


@dataclass(frozen=True)
class Result:
    """What a finished program left behind (exit code and captured text)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Tool:
    """An external CLI found on PATH by its plain name."""

    program: str
    hint: str
    error: type[ToolError] = ToolError

    def __getitem__(self, args: Any) -> Any:
        """`tool["a", "b"]`: a plumbum bound command for program + args (nothing is looked up)."""
        if not isinstance(args, tuple):
            args = (args,)
        return _local_command(self.program)[tuple(str(a) for a in args)]

    def which(self) -> str | None:
        return shutil.which(self.program, path=os.environ.get("PATH", os.defpath))

    def available(self) -> bool:
        return self.which() is not None

    def require(self) -> str:
        path = self.which()
        if path is None:
            raise ToolMissing(self.program, self.hint)
        return path

    def run(
        self,
        cmd: Any,
        *,
        check: bool = True,
        input: bytes | str | None = None,
        stdin: IO[bytes] | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        progress: bool = False,
        cwd: str | Path | None = None,
    ) -> Result:
        """Run `cmd` (from `tool[...]`), capture its output, raise `self.error` on non-zero.

        `env` is laid over the current environment. With `progress=True` and a
        terminal on stderr, the program's output is streamed there as it comes.
        """
        argv = [str(a) for a in cmd.formulate()]
        path = self.require()
        full_env = {**os.environ, **(env or {})}
        secrets = tuple(secrets)
        stream = progress and sys.stderr.isatty()
        data = input.encode() if isinstance(input, str) else input
        popen = _popen(
            path,
            argv,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.PIPE if data is not None else (stdin or subprocess.DEVNULL),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stream else subprocess.PIPE,
        )
        try:
            if stream:
                out, err = _tee(popen, timeout), b""
            else:
                out, err = popen.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(popen)
            raise self.error(
                argv, -9, secrets=secrets, reason=f"timed out after {timeout:g}s"
            ) from None
        except BaseException:
            _kill(popen)
            raise
        result = Result(argv, int(popen.returncode), _text(out), _text(err))
        if check and result.returncode != 0:
            raise self.error(argv, result.returncode, result.stdout, result.stderr, secrets=secrets)
        return result

    def spawn(
        self,
        cmd: Any,
        *,
        env: Mapping[str, str] | None = None,
        log: IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-lived server. It gets SIGKILL if we die, even by SIGKILL (Linux)."""
        path = self.require()
        argv = [str(a) for a in cmd.formulate()]
        return _popen(
            path,
            argv,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def run_attached(
        self,
        cmd: Any,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> int:
        """Run with the caller's stdin/stdout/stderr (an agent session); return its exit code."""
        path = self.require()
        argv = [str(a) for a in cmd.formulate()]
        proc = _popen(
            path,
            argv,
            env={**os.environ, **(env or {})},
            cwd=str(cwd) if cwd else None,
            stdin=None,
            stdout=None,
            stderr=None,
        )
        try:
            return int(proc.wait())
        except BaseException:
            _kill(proc)
            raise


def _local_command(program: str) -> Any:
    # Imported on first use: the warm (cache-hit) path runs no tool and needn't pay for it.
    from plumbum.machines.local import LocalCommand

    return LocalCommand(program)


def _popen(path: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start `path` with argv[1:] and exactly the env given.

    Not through plumbum's popen: it lays its import-time snapshot of the environment
    under the one passed, so a variable unset since then would still reach the child."""
    return subprocess.Popen([path, *argv[1:]], **kwargs)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


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

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    proc.wait(timeout=timeout)
    reader.join()
    return bytes(tail)
