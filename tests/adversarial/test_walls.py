"""The bottle's walls, attacked: hostile input, signals at every step, damaged caches,
a full disk and a read-only cache, on the real engine.

After each case: no traceback, one clear line, the right exit code, and nothing left
behind (containers, networks, temp dirs, registries), the cache still consistent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import WORKSPACE_UID
from tests.helpers import bottle, docker_calls, spawn

pytestmark = pytest.mark.engine


def bottles() -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=bot-bottle=1", "--format",
                          "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return out.split()


def one_clear_line(stderr: str) -> str:
    """The error line of a failed run: exactly one `bottle: error:` line, no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("bottle: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory, docker_host: str) -> Iterator[Path]:
    """One cache for the many cases that only differ in what happens at launch (so the
    example agent is built once); its images are removed with it."""
    root = tmp_path_factory.mktemp("shared") / "cache"
    yield root
    from bottle.image import cache_label
    from cache.store import Store

    env = {**os.environ, "DOCKER_HOST": docker_host}
    (label,) = (f"{k}={v}" for k, v in cache_label(Store(root)).items())
    ids = subprocess.run(["docker", "images", "-q", "--filter", f"label={label}"], env=env,
                         capture_output=True, text=True).stdout.split()
    subprocess.run(["docker", "rmi", "-f", *ids], env=env, capture_output=True)


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """TMPDIR for the bottle under test; it must be empty when the test ends."""
    tmp = tmp_path / "process-tmp"
    tmp.mkdir()
    yield {"TMPDIR": str(tmp)}
    assert sorted(p.name for p in tmp.iterdir()) == []


def wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)
    assert predicate(), "timed out waiting"  # type: ignore[operator]


# --- hostile workspace paths (issue 8.1) ----------------------------------------------

HOSTILE_DIRS = ["proj,source=VICTIM", 'quo"te', "new\nline", "sp ace", "eq=al,target=/x",
                "-leading-dash", "colon:ro", "ünï-cødé", "back\\slash", "semi;colon$(id)"]


@pytest.mark.parametrize("name", HOSTILE_DIRS)
def test_a_hostile_workspace_name_mounts_exactly_that_directory(
        name: str, tmp_path: Path, engine: str, tmpdir_env: dict[str, str],
        shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(shared_cache))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "VICTIM-ONLY").write_text("secret")
    ws = tmp_path / name.replace("VICTIM", str(victim))
    ws.mkdir(parents=True)
    (ws / "mine.txt").write_text("x")
    os.chown(ws, WORKSPACE_UID, WORKSPACE_UID) if os.geteuid() == 0 else None
    r = bottle("launch", "--headless", "--workspace", str(ws), "--command", "sh", "--",
               "-c", "ls -A /workspace; touch /workspace/written", cwd=tmp_path,
               env=tmpdir_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["mine.txt"]
    assert (ws / "written").exists() and not (victim / "written").exists()
    assert bottles() == []


def test_a_workspace_with_a_carriage_return_is_refused(tmp_path: Path, engine: str) -> None:
    ws = tmp_path / "a\rb"
    ws.mkdir()
    r = bottle("launch", "--headless", "--workspace", str(ws), cwd=tmp_path)
    assert r.returncode == 1 and "carriage return" in one_clear_line(r.stderr)
    assert bottles() == []


# --- hostile values: flags, env, networks (issue 8.2-8.4) -----------------------------


@pytest.mark.parametrize(("toml", "expected"), [
    ('image = "--help"\n', "image = '--help': bad image reference '--help': starts with '-'"),
    ('env = { "#X" = "v" }\n', "not a valid environment variable name"),
    ('env = { "PATH=/evil:/bin#" = "v" }\n', "not a valid environment variable name"),
    ('network = "--privileged"\n', "expected none, host, egress or a docker network"),
    ('network = "nosuchnet"\n', "network nosuchnet not found"),
    ('user = "root;id"\n', "expected a user name"),
])
def test_hostile_config_values_are_one_line_and_start_nothing(
        toml: str, expected: str, workspace: Path, tmpdir_env: dict[str, str]) -> None:
    (workspace / "bottle.toml").write_text(toml)
    r = bottle("launch", "--headless", cwd=workspace, env=tmpdir_env)
    assert r.returncode == 1
    assert expected in one_clear_line(r.stderr)
    assert bottles() == []


def test_env_values_reach_the_agent_verbatim(workspace: Path) -> None:
    (workspace / "bottle.toml").write_text('env = { ODD = "a b \'q\' $(id) `id` ; | & ünï" }\n')
    r = bottle("launch", "--headless", cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert "env: ODD=a b 'q' $(id) `id` ; | & ünï" in r.stdout


def test_a_secret_that_is_not_utf8_reaches_the_agent_by_name_only(workspace: Path,
                                                                  tmp_path: Path) -> None:
    secret = b"sk-\xff\xfe-not-utf8"
    env = {k: v for k, v in os.environ.items()}
    env.update({"PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                "BOTTLE_SECRETS": "API_KEY"})
    envb = {k.encode(): v.encode() for k, v in env.items()}
    envb[b"API_KEY"] = secret
    r = subprocess.run([sys.executable, "-m", "bottle", "launch", "--headless"],
                       cwd=workspace, env=envb, capture_output=True, timeout=300)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "Traceback" not in err, err
    assert b"env: API_KEY=<" in r.stdout
    assert secret not in r.stderr and secret not in r.stdout


# --- signals at every step (issue 8.5, 8.6) --------------------------------------------


@pytest.mark.parametrize("step", ["build", "create", "start", "attached"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_signal_at_any_step_leaves_nothing(
        step: str, sig: signal.Signals, workspace: Path, slow_docker: Path,
        tmpdir_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        shared_cache: Path) -> None:
    """`build`: during an image build; `create`: while the container is made; `start`:
    just before the agent starts (by the CLI); `attached`: while the agent runs, attached
    over the engine's API."""
    if step != "build":  # a build needs a cold cache: the others share a warm one
        monkeypatch.setenv("BOTTLE_CACHE_DIR", str(shared_cache))
    if step in ("create", "start"):  # a docker context sends these through the CLI, to stall
        monkeypatch.setenv("DOCKER_CONTEXT", "default")
    if step != "attached":
        monkeypatch.setenv("SLOW_STEP", step)
    monkeypatch.setenv("BOTTLE_SECRETS", "MY_SECRET")
    monkeypatch.setenv("MY_SECRET", "sk-do-not-leak-123")
    p = spawn("launch", "--headless", "--", "--sleep", "30", cwd=workspace, env=tmpdir_env)
    if step == "attached":
        wait_for(lambda: _running_bottles() != [] or p.poll() is not None, timeout=120)
    else:
        wait_for(lambda: slow_docker.exists() or p.poll() is not None)
    if p.poll() is not None:
        pytest.skip(f"no `docker {step}` on this path")  # e.g. a cache hit skips build
    time.sleep(0.3)
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert p.returncode == -9
        # Whatever the killed run left is the next run's to remove.
        monkeypatch.delenv("SLOW_STEP", raising=False)
        wait_for(lambda: not _docker_cli_running(), timeout=30)
        r = bottle("launch", "--headless", cwd=workspace, env=tmpdir_env)
        assert r.returncode == 0, r.stderr
    else:
        assert p.returncode == 128 + sig, err
        assert "Traceback" not in err and "bottle: interrupted" in err
    assert bottles() == []
    assert "sk-do-not-leak-123" not in out + err
    assert not _secret_on_disk(workspace, "sk-do-not-leak-123")


def _running_bottles() -> list[str]:
    out = subprocess.run(["docker", "ps", "--filter", "label=bot-bottle=1", "--filter",
                          "status=running", "--format", "{{.Names}}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def _docker_cli_running() -> bool:
    r = subprocess.run(["pgrep", "-f", "slow-docker"], capture_output=True)
    return r.returncode == 0


def _secret_on_disk(workspace: Path, secret: str) -> list[Path]:
    roots = [Path(os.environ["BOTTLE_CACHE_DIR"]), workspace.parent]
    found = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = Path(dirpath) / f
                try:
                    if p.stat().st_size < 10_000_000 and secret.encode() in p.read_bytes():
                        found.append(p)
                except OSError:
                    continue
    return found


def test_a_second_interrupt_during_teardown_still_removes_the_bottle(
        workspace: Path, slow_docker: Path, monkeypatch: pytest.MonkeyPatch,
        tmpdir_env: dict[str, str]) -> None:
    """Issue 8.6: a second Ctrl-C (or SIGTERM) while `docker rm` runs must not leave the
    container running while we claim it is gone."""
    # A docker context sends every engine call through the CLI, so the shim can stall
    # teardown's `docker rm`.
    p = spawn("launch", "--headless", "--", "--sleep", "60", cwd=workspace,
              env={**tmpdir_env, "SLOW_STEP": "rm", "SLOW_SECONDS": "3",
                   "DOCKER_CONTEXT": "default"})
    wait_for(lambda: bool(bottles()))
    time.sleep(0.5)
    slow_docker.unlink(missing_ok=True)  # the next stall is teardown's
    p.send_signal(signal.SIGINT)
    wait_for(slow_docker.exists)  # teardown's `docker rm` is under way
    p.send_signal(signal.SIGINT)
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "still removing" in err and "Traceback" not in err
    assert bottles() == []


def test_sigterm_exits_143(workspace: Path) -> None:
    p = spawn("launch", "--headless", "--", "--sleep", "60", cwd=workspace)
    wait_for(lambda: bool(bottles()))
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 143
    assert bottles() == []


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # it has just exited
        return False


def test_an_interrupt_while_bottle_starts_up_is_quiet(workspace: Path) -> None:
    """A Ctrl-C before the handlers are in place (Python still importing) is a quiet 130,
    not a KeyboardInterrupt traceback."""
    for delay in (0.0, 0.01, 0.02, 0.04, 0.06, 0.1, 0.2):
        p = spawn("launch", "--headless", "--", "--sleep", "30", cwd=workspace)
        # From the moment our imports load xxhash (a Ctrl-C while the interpreter itself
        # starts is Python's to report, not ours).
        deadline = time.monotonic() + 30
        while p.poll() is None and not _loaded(p.pid, "xxhash"):
            assert time.monotonic() < deadline, "bottle never got to its imports"
            time.sleep(0.001)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert "Traceback" not in err, (delay, err)
        assert p.returncode in (130, -signal.SIGINT), (delay, p.returncode, err)
    assert bottles() == []


def test_interrupts_after_the_teardown_change_nothing(workspace: Path) -> None:
    """Ctrl-C pressed again and again as bottle finishes: the teardown's exit code, no
    traceback from the last flush or the interpreter's shutdown."""
    for _ in range(3):
        p = spawn("launch", "--headless", "--", "--sleep", "30", cwd=workspace)
        wait_for(lambda: bool(bottles()))
        p.send_signal(signal.SIGTERM)
        while p.poll() is None:
            p.send_signal(signal.SIGINT)
            time.sleep(0.002)
        err = p.stderr.read() if p.stderr else ""
        assert "Traceback" not in err, err
        assert p.returncode in (130, 143), (p.returncode, err)
    assert bottles() == []


# --- the sweep never removes what it cannot prove dead (issue 8.7) -----------------------


def test_a_bottle_of_another_host_or_pid_namespace_is_never_swept(workspace: Path,
                                                                    tmp_path: Path) -> None:
    from bottle.backend import owner_token

    mine = owner_token().split("/")
    strangers = {
        "other-boot": "/".join(["0" * 8 + "-other-boot", *mine[1:]]),
        "other-pidns": "/".join([mine[0], "4026531999", mine[2], mine[3]]),
        "unreadable": "host-a:1234",
    }
    ctx = tmp_path / "idle"
    ctx.mkdir()
    from tests.conftest import busybox_context

    busybox_context(ctx)
    built = subprocess.run(["docker", "build", "-q", str(ctx)], capture_output=True,
                           text=True, check=True).stdout.strip()
    try:
        for name, owner in strangers.items():
            subprocess.run(["docker", "run", "-d", "--name", f"bot-bottle-{name}",
                            "--label", "bot-bottle=1", "--label", f"bot-bottle.owner={owner}",
                            "--network", "none", built, "sleep", "300"],
                           check=True, capture_output=True)
        r = bottle("sweep", cwd=workspace)
        assert r.returncode == 0, r.stderr
        assert sorted(bottles()) == sorted(f"bot-bottle-{n}" for n in strangers)
    finally:
        subprocess.run(["docker", "rm", "-f", *(f"bot-bottle-{n}" for n in strangers)],
                       capture_output=True)
        subprocess.run(["docker", "rmi", "-f", built], capture_output=True)


# --- hardening (issue 8.13) ------------------------------------------------------------


def test_the_bottle_is_hardened(workspace: Path) -> None:
    script = ("ls /sys/class/net; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
              "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; "
              "ps -o pid,comm | head -3")
    r = bottle("launch", "--headless", "--command", "sh", "--", "-c", script, cwd=workspace,
               env={"BOTTLE_PIDS_LIMIT": "321"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "lo"  # network none: loopback only
    assert "CapEff:\t0000000000000000" in r.stdout
    assert "NoNewPrivs:\t1" in r.stdout
    assert "321" in r.stdout
    assert "init" in r.stdout  # an init reaps and forwards signals: the agent is not pid 1


def test_an_image_whose_agent_user_is_root_is_refused(workspace: Path, tmp_path: Path) -> None:
    from tests.conftest import busybox_context

    ctx = busybox_context(tmp_path / "rootnode", "RUN mkdir -p /etc /home/node && "
                          "echo 'node:x:0:0::/home/node:/bin/sh' > /etc/passwd && "
                          "echo 'node:x:0:' > /etc/group\n")
    (workspace / "bottle.toml").write_text(f'context = "{ctx}"\n')
    r = bottle("launch", "--headless", cwd=workspace)
    assert r.returncode == 1
    assert "user node is root (uid 0) in the image" in one_clear_line(r.stderr)
    assert bottles() == []


@pytest.mark.parametrize("user", ["node", "1000"])
def test_the_agent_user_by_name_or_uid_becomes_the_workspace_owner(workspace: Path,
                                                                    user: str) -> None:
    (workspace / "bottle.toml").write_text(f'user = "{user}"\n')
    r = bottle("launch", "--headless", cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert f"user: node uid={WORKSPACE_UID}" in r.stdout


# --- a full disk and a read-only cache (issue 8.11) -----------------------------------



def test_a_full_cache_disk_is_one_clear_line(workspace: Path, small_tmpfs: Path) -> None:
    (small_tmpfs / "filler").write_bytes(b"x" * (1024 * 1024 - 8192))
    r = bottle("launch", "--headless", cwd=workspace,
               env={"BOTTLE_CACHE_DIR": str(small_tmpfs / "cache")})
    assert r.returncode == 1
    assert "no space left" in one_clear_line(r.stderr)
    assert bottles() == []
    leftovers = [p for p in (small_tmpfs / "cache" / "tmp").glob("*")] \
        if (small_tmpfs / "cache" / "tmp").exists() else []
    assert leftovers == []


def test_a_read_only_cache_still_launches_and_the_exit_code_wins(workspace: Path,
                                                                  tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    cache = Path(os.environ["BOTTLE_CACHE_DIR"])
    assert bottle("launch", "--headless", cwd=workspace).returncode == 0  # warm it
    r = subprocess.run(["mount", "--bind", str(cache), str(cache)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=True)
        r = bottle("launch", "--headless", "--", "--exit-code", "5", cwd=workspace)
        assert r.returncode == 5, r.stderr
        assert "Traceback" not in r.stderr and "build: cache hit" in r.stderr
        # A cold build too (another build arg: another digest), and a new user mapping.
        other = tmp_path / "other-owner"
        other.mkdir()
        os.chown(other, 4321, 4321)
        r = bottle("launch", "--headless", "--workspace", str(other), "--", "--exit-code",
                   "6", cwd=workspace, env={"BOTTLE_BUILD_ARGS": "UNUSED=1"})
        assert r.returncode == 6, r.stderr
        assert "Traceback" not in r.stderr and "build: built" in r.stderr
        assert "read-only" in r.stderr  # said once, as a warning
        r = bottle("build", cwd=workspace, env={"BOTTLE_BUILD_ARGS": "UNUSED=2"})
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        # The images built meanwhile have no record: gc must not take them for garbage.
        # (As sets: images made in the same second list in either order.)
        images = set(subprocess.run(["docker", "images", "-q"], capture_output=True,
                                    text=True).stdout.split())
        r = bottle("cache_gc", cwd=workspace)
        assert r.returncode == 1 and "is read-only: nothing removed" in one_clear_line(r.stderr)
        assert set(subprocess.run(["docker", "images", "-q"], capture_output=True,
                                  text=True).stdout.split()) == images
    finally:
        subprocess.run(["umount", "-l", str(cache)], capture_output=True)
    assert bottles() == []


def test_a_read_only_cache_that_never_held_the_example_still_launches_it(
        workspace: Path, tmpdir_env: dict[str, str]) -> None:
    """The bundled example's build context is assembled in the cache; a read-only cache
    that never had it gets it assembled for this run outside the cache (and removed)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    cache = Path(os.environ["BOTTLE_CACHE_DIR"])
    cache.mkdir(parents=True)
    r = subprocess.run(["mount", "--bind", str(cache), str(cache)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=True)
        for code in ("4", "5"):
            r = bottle("launch", "--headless", "--", "--exit-code", code, cwd=workspace,
                       env=tmpdir_env)
            assert r.returncode == int(code), r.stderr
            assert "Traceback" not in r.stderr and "read-only" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", "-l", str(cache)], capture_output=True)
    assert bottles() == []


def test_a_cache_root_that_is_a_file_is_one_line(workspace: Path, tmp_path: Path) -> None:
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    r = bottle("launch", "--headless", cwd=workspace, env={"BOTTLE_CACHE_DIR": str(f)})
    assert r.returncode == 1 and "is not a directory" in one_clear_line(r.stderr)


def test_docker_calls_are_quiet_on_a_warm_run(workspace: Path, recording_docker: Path) -> None:
    """Control for the suite: a warm build makes no docker call at all."""
    assert bottle("build", cwd=workspace).returncode == 0
    recording_docker.write_text("")
    r = bottle("build", cwd=workspace)
    assert r.returncode == 0 and "cache hit" in r.stderr
    assert docker_calls(recording_docker) == []


def test_a_killed_launchs_network_is_swept(workspace: Path, tmp_path: Path) -> None:
    """Networks of a launch that was SIGKILLed go with the next sweep (and only those)."""
    from bottle.backend import owner_token

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    mine = owner_token()
    tokens = {"bot-bottle-dead-net": mine.replace(f"/{os.getpid()}/", f"/{dead}/"),
              "bot-bottle-live-net": mine}
    try:
        for name, owner in tokens.items():
            subprocess.run(["docker", "network", "create", "--label", "bot-bottle=1",
                            "--label", f"bot-bottle.owner={owner}", name], check=True,
                           capture_output=True)
        r = bottle("sweep", cwd=workspace)
        assert r.returncode == 0 and "removed network bot-bottle-dead-net" in r.stderr, r.stderr
        left = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              capture_output=True, text=True).stdout.split()
        assert "bot-bottle-dead-net" not in left and "bot-bottle-live-net" in left
    finally:
        subprocess.run(["docker", "network", "rm", *tokens], capture_output=True)


def test_a_working_directory_that_is_not_utf8(tmp_path: Path, engine: str) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/odd-\xff\xfe"))
    odd.mkdir()
    r = subprocess.run([sys.executable, "-m", "bottle", "list"], cwd=odd, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "bottle", "launch", "--headless"], cwd=odd,
                       capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert r.returncode == 1 and b"Traceback" not in r.stderr
    assert b"the path is not UTF-8" in r.stderr
    assert bottles() == []
