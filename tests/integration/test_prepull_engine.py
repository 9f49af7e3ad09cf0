"""`bottle prepull` against a real registry on loopback, with compose (v2 and v1, for real)
resolving images from two files named by COMPOSE_FILE in the deployment's .env and
${VERSION} interpolation."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle.tools import docker, skopeo
from bottle.tools.registry import RegistryHandle, ephemeral_registry
from tests import compose_flavors
from tests.conftest import ROOT, busybox_context
from tests.helpers import bottle, docker_calls, spawn


@pytest.fixture(params=compose_flavors.FLAVORS)
def flavor(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> str:
    compose_flavors.install(request.param, tmp_path / "compose", monkeypatch)
    return str(request.param)


@pytest.fixture
def registry_with_two_images(engine: str, tmp_path: Path) -> Iterator[RegistryHandle]:
    with ephemeral_registry(tmp=tmp_path) as reg:
        try:
            for name in ("web", "worker"):
                ctx = busybox_context(tmp_path / name, f'LABEL svc="{name}"\n')
                docker.build_image(ctx, f"bb-prepull-{name}:src",
                                   iidfile=tmp_path / f"{name}.iid")
                tar = tmp_path / f"{name}.tar"
                docker.save(f"bb-prepull-{name}:src", tar)
                skopeo.copy_archive(tar, f"{reg.push_endpoint}/{name}:2.1")
            yield reg
        finally:
            for ref in ("bb-prepull-web:src", "bb-prepull-worker:src",
                        f"{reg.pull_endpoint}/web:2.1", f"{reg.pull_endpoint}/worker:2.1"):
                _rmi(ref)


@pytest.fixture
def deployment(tmp_path: Path, registry_with_two_images: RegistryHandle, flavor: str) -> Path:
    reg = registry_with_two_images.pull_endpoint
    app = tmp_path / "app"
    (app / "b").mkdir(parents=True)
    (app / "base.yml").write_text(f"""services:
  web:
    image: "{reg}/web:${{VERSION}}"
  builder:
    build: ./b
  debug:
    image: {reg}/debug:1
    profiles: ["debug"]
""")
    (app / "extra.yml").write_text(f"""services:
  worker:
    image: {reg}/worker:${{VERSION:-latest}}
  cache:
    image: "{reg}/web:${{VERSION}}"
""")
    (app / ".env").write_text("export COMPOSE_FILE=base.yml:extra.yml # both\nVERSION=2.1\n")
    return app


def _rmi(ref: str) -> None:
    subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, check=False)


def _pulled_since(since: float) -> list[str]:
    """What the engine pulled since then (its own events, whoever asked: API or CLI)."""
    out = subprocess.run(["docker", "events", f"--since={since:.3f}",
                          f"--until={time.time() + 0.5:.3f}", "--filter=type=image",
                          "--filter=event=pull", "--format={{.Actor.ID}}"],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_pulls_exactly_the_missing_image(deployment: Path, recording_docker: Path,
                                         registry_with_two_images: RegistryHandle) -> None:
    reg = registry_with_two_images.pull_endpoint
    web, worker = f"{reg}/web:2.1", f"{reg}/worker:2.1"
    _rmi(web)
    _rmi(worker)
    first = bottle("prepull", "--project-dir", str(deployment), "--json", cwd=deployment)
    assert first.returncode == 0, first.stderr
    got = {i["image"]: i["status"] for i in json.loads(first.stdout)["images"]}
    assert got == {web: "pulled", worker: "pulled"}  # web once (two services), no debug
    assert docker.engine_has_image(web) and docker.engine_has_image(worker)

    _rmi(worker)
    recording_docker.write_text("")
    since = time.time()
    second = bottle("prepull", cwd=deployment)
    assert second.returncode == 0, second.stderr
    assert _pulled_since(since) == [worker]
    # Over the engine's API, as compose pulls (no credentials are configured here).
    assert not [c for c in docker_calls(recording_docker) if c.startswith("pull")]
    assert "present" in second.stdout and "1 present, 1 pulled" in second.stdout

    since = time.time()
    third = bottle("prepull", "--quiet", cwd=deployment)
    assert third.returncode == 0 and third.stdout == ""
    assert _pulled_since(since) == []


def test_credentials_in_dockers_config_go_through_the_cli(
        deployment: Path, recording_docker: Path,
        registry_with_two_images: RegistryHandle) -> None:
    """Only the docker CLI reads docker's credentials (and their helpers): a registry
    docker's config names is pulled from by `docker pull`."""
    reg = registry_with_two_images.pull_endpoint
    web, worker = f"{reg}/web:2.1", f"{reg}/worker:2.1"
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    config.write_text(json.dumps({"auths": {reg: {}}}))
    _rmi(web)
    _rmi(worker)
    r = bottle("prepull", "--quiet", cwd=deployment)
    assert r.returncode == 0, r.stderr
    pulled = sorted(c for c in docker_calls(recording_docker) if c.startswith("pull"))
    assert pulled == [f"pull --quiet -- {web}", f"pull --quiet -- {worker}"]
    assert docker.engine_has_image(web) and docker.engine_has_image(worker)


def test_bad_tag_fails_fast_with_a_clear_error(deployment: Path,
                                               registry_with_two_images: RegistryHandle) -> None:
    reg = registry_with_two_images.pull_endpoint
    (deployment / ".env").write_text("COMPOSE_FILE=base.yml:extra.yml\nVERSION=9.9-missing\n")
    r = bottle("prepull", "--quiet", cwd=deployment)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bottle: error: prepull: cannot pull ")
    assert f"{reg}/" in lines[0] and "9.9-missing" in lines[0]
    assert "not found" in lines[0] or "manifest unknown" in lines[0]


def test_profiles_enable_services(deployment: Path,
                                  registry_with_two_images: RegistryHandle) -> None:
    r = bottle("prepull", "--profile", "debug", "--json", cwd=deployment)
    assert r.returncode == 1  # debug:1 was never pushed
    assert "debug:1" in r.stderr
    statuses = {i["image"].rsplit("/", 1)[1]: i["status"] for i in json.loads(r.stdout)["images"]}
    assert statuses["debug:1"] == "failed"


def test_a_flag_for_an_image_never_reaches_docker(deployment: Path, recording_docker: Path) -> None:
    (deployment / ".env").write_text("COMPOSE_FILE=base.yml:extra.yml\nVERSION=2.1\n"
                                     "DEBUG_IMAGE=--help\n")
    (deployment / "extra.yml").write_text((deployment / "extra.yml").read_text()
                                          + '  helper:\n    image: "${DEBUG_IMAGE}"\n')
    r = bottle("prepull", cwd=deployment)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "bottle: error: prepull: service helper: bad image reference '--help': starts with '-'"]
    assert not [c for c in docker_calls(recording_docker) if c.startswith("pull")]


def test_pull_policies(tmp_path: Path, registry_with_two_images: RegistryHandle, flavor: str,
                       recording_docker: Path) -> None:
    """never and build: left alone; always: pulled although present; missing: skipped."""
    reg = registry_with_two_images.pull_endpoint
    app = tmp_path / "policies"
    (app / "b").mkdir(parents=True)
    (app / "compose.yml").write_text(f"""services:
  web: {{image: "{reg}/web:2.1"}}
  worker: {{image: "{reg}/worker:2.1", pull_policy: always}}
  sidecar: {{image: "{reg}/absent:1", pull_policy: never}}
  local: {{image: "{reg}/local:1", build: ./b, pull_policy: build}}
""")
    assert bottle("prepull", "--quiet", cwd=app).returncode == 0
    since = time.time()
    r = bottle("prepull", "--json", cwd=app)
    assert r.returncode == 0, r.stderr
    got = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
    assert got == {f"{reg}/web:2.1": "present", f"{reg}/worker:2.1": "pulled"}
    assert _pulled_since(since) == [f"{reg}/worker:2.1"]


def test_a_buildable_image_the_registry_lacks_is_to_build_not_failed(
        tmp_path: Path, _private_cache: Path, registry_with_two_images: RegistryHandle,
        flavor: str) -> None:
    """compose builds a service with `build:` when its pull fails: exit 0, and neither the
    table nor the JSON calls it failed (the full way and the replay alike)."""
    reg = registry_with_two_images.pull_endpoint
    app = tmp_path / "buildable"
    (app / "b").mkdir(parents=True)
    (app / "compose.yml").write_text(f"""services:
  web: {{image: "{reg}/web:2.1"}}
  local: {{image: "{reg}/local:1", build: ./b}}
""")

    def check(web: str, r: subprocess.CompletedProcess[str],
              t: subprocess.CompletedProcess[str]) -> None:
        assert r.returncode == 0, r.stderr
        got = {i["image"]: (i["status"], bool(i["error"])) for i in json.loads(r.stdout)["images"]}
        assert got == {f"{reg}/web:2.1": (web, False), f"{reg}/local:1": ("to build", True)}
        assert t.returncode == 0, t.stderr
        assert "failed" not in t.stdout and "1 present, 1 to build in" in t.stdout, t.stdout

    try:
        check("pulled", bottle("prepull", "--json", cwd=app, env=_PINNED),
              bottle("prepull", cwd=app, env=_PINNED))
        time.sleep(2.1)  # older than the racy window: the next runs leave memos
        for args in (["--json"], []):
            assert bottle("prepull", *args, cwd=app, env=_PINNED).returncode == 0
        replayed, r = _replayed(_private_cache, "--json", cwd=app)
        replayed_too, t = _replayed(_private_cache, cwd=app)
        assert replayed and replayed_too
        check("present", r, t)
    finally:
        subprocess.run(["docker", "rmi", "-f", f"{reg}/web:2.1"], capture_output=True)


# --- the replay of an unchanged run (bottle.memo, bottle.prepull_report) ------------------


def _records(cache: Path) -> list[Path]:
    """compose's cached answers: a run that goes the full way reads (or writes) one."""
    return sorted((cache / "prepull").glob("*.json"))


# pytest's own variable changes between a fixture and its test; the memo ignores it (no
# run reads it), and these runs pin it all the same, so a replay never rests on that.
_PINNED = {"PYTEST_CURRENT_TEST": "prepull replay"}


def _replayed(cache: Path, *args: str,
              cwd: Path) -> tuple[bool, subprocess.CompletedProcess[str]]:
    """Run `bottle prepull ARGS` with compose's cached answer removed first: a replay does
    not need it (and does not write it back); the full way asks compose again."""
    for record in _records(cache):
        record.unlink()
    r = bottle("prepull", *args, cwd=cwd, env=_PINNED)
    return not _records(cache), r


@pytest.fixture
def remembered(deployment: Path, _private_cache: Path,
               registry_with_two_images: RegistryHandle) -> Path:
    """The deployment prepulled once, and once more when every stat it looked at is older
    than the racy window, so the second run left a memo."""
    assert bottle("prepull", "--json", cwd=deployment, env=_PINNED).returncode == 0
    time.sleep(2.1)  # the plugin and PATH directories this test made are that new
    r = bottle("prepull", "--json", cwd=deployment, env=_PINNED)
    assert r.returncode == 0, r.stderr
    assert list((_private_cache / "prepull").glob("memo-*"))
    return deployment


def test_an_unchanged_run_is_replayed_with_the_same_output(
        remembered: Path, _private_cache: Path, registry_with_two_images: RegistryHandle) -> None:
    reg = registry_with_two_images.pull_endpoint
    replayed, r = _replayed(_private_cache, "--json", cwd=remembered)
    assert replayed and r.returncode == 0 and r.stderr == ""
    got = json.loads(r.stdout)
    assert {i["image"]: (i["status"], i["error"]) for i in got["images"]} == {
        f"{reg}/web:2.1": ("present", ""), f"{reg}/worker:2.1": ("present", "")}
    assert isinstance(got["seconds"], float)
    # Other arguments are another command line: the full way, then its own memo.
    replayed, r = _replayed(_private_cache, "--quiet", cwd=remembered)
    assert not replayed and r.returncode == 0 and r.stdout == ""


@pytest.mark.parametrize("change", [
    "compose file", "dotenv", "environment", "compose's environment", "config file appears",
    "docker config",
    "program on PATH", "damaged memo"])
def test_any_changed_input_goes_the_full_way(
        remembered: Path, _private_cache: Path, registry_with_two_images: RegistryHandle,
        change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry_with_two_images.pull_endpoint
    if change == "compose file":
        extra = remembered / "extra.yml"
        extra.write_text(extra.read_text() + "# the same services\n")
    elif change == "dotenv":
        (remembered / ".env").write_text("COMPOSE_FILE=base.yml:extra.yml\nVERSION=2.1\n")
    elif change == "environment":
        monkeypatch.setenv("VERSION", "2.1")  # named in the files: the .env's then loses
    elif change == "compose's environment":
        monkeypatch.setenv("COMPOSE_PARALLEL_LIMIT", "3")  # compose reads it unasked
    elif change == "config file appears":
        (remembered / "bottle.toml").write_text("jobs = 2\n")
    elif change == "docker config":  # credentials: only the CLI pulls then
        (Path(os.environ["DOCKER_CONFIG"]) / "config.json").write_text('{"auths": {}}')
    elif change == "program on PATH":
        bin_dir = Path(os.environ["PATH"].split(os.pathsep)[0])
        (bin_dir / "some-tool").write_text("#!/bin/sh\n")
    elif change == "damaged memo":
        (memo_file,) = (_private_cache / "prepull").glob("memo-*")
        data = bytearray(memo_file.read_bytes())
        data[-3] ^= 0xFF
        memo_file.write_bytes(bytes(data))
    replayed, r = _replayed(_private_cache, "--json", cwd=remembered)
    assert not replayed and r.returncode == 0, r.stderr
    statuses = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
    assert statuses[f"{reg}/worker:2.1"] == "present"


def test_a_variable_nothing_reads_still_replays(
        remembered: Path, _private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI job's or another terminal's own variables (a job id, a session) change nothing
    compose or prepull reads: the run is replayed."""
    monkeypatch.setenv("CI_JOB_ID", "4711")
    monkeypatch.setenv("TERM_SESSION_ID", "w0t1p0")
    replayed, r = _replayed(_private_cache, "--json", cwd=remembered)
    assert replayed and r.returncode == 0, r.stderr


def test_a_replay_pulls_what_went_missing(remembered: Path, _private_cache: Path,
                                          registry_with_two_images: RegistryHandle) -> None:
    reg = registry_with_two_images.pull_endpoint
    _rmi(f"{reg}/worker:2.1")
    since = time.time()
    replayed, r = _replayed(_private_cache, "--json", cwd=remembered)
    assert replayed and r.returncode == 0, r.stderr
    statuses = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
    assert statuses == {f"{reg}/web:2.1": "present", f"{reg}/worker:2.1": "pulled"}
    assert _pulled_since(since) == [f"{reg}/worker:2.1"]


def test_a_failing_pull_fails_the_same_on_replay(remembered: Path, _private_cache: Path) -> None:
    """The memo keeps the resolution, not the outcome: pulls run live each time."""
    (remembered / ".env").write_text("COMPOSE_FILE=base.yml:extra.yml\nVERSION=9.9-missing\n")
    first = bottle("prepull", "--json", cwd=remembered, env=_PINNED)
    assert first.returncode == 1
    replayed, again = _replayed(_private_cache, "--json", cwd=remembered)
    assert replayed and again.returncode == 1
    # Both missing tags fail; whichever the registry answers first ends the run (the other
    # is cut short), so the line names one of them, the same way both times.
    for run in (first, again):
        (line,) = run.stderr.strip().splitlines()
        assert re.fullmatch(r"bottle: error: prepull: cannot pull \S+/(web|worker):9\.9-missing: "
                            r"manifest for \S+ not found: manifest unknown: manifest unknown "
                            r"\(stopped before deploy\)", line), line
    statuses = [i["status"] for i in json.loads(again.stdout)["images"]]
    assert "failed" in statuses


def test_gc_and_verify_take_the_memos_as_records(remembered: Path,
                                                 _private_cache: Path) -> None:
    memos = list((_private_cache / "prepull").glob("memo-*"))
    r = bottle("cache_verify", cwd=remembered)
    assert r.returncode == 0 and "damaged" not in r.stderr + r.stdout, r.stderr
    r = bottle("cache_gc", cwd=remembered)
    assert r.returncode == 0, r.stderr
    assert list((_private_cache / "prepull").glob("memo-*")) == memos  # young: kept


def test_a_read_only_cache_still_prepulls(deployment: Path, _private_cache: Path,
                                          registry_with_two_images: RegistryHandle) -> None:
    """The cache only saves work: compose's answer, compose v1's version and the memo
    are not kept, and the pulls happen as always."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    reg = registry_with_two_images.pull_endpoint
    _rmi(f"{reg}/worker:2.1")
    _private_cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "--bind", str(_private_cache), str(_private_cache)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(_private_cache)], check=True)
        for _ in range(2):
            r = bottle("prepull", "--json", cwd=deployment)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        statuses = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
        assert statuses == {f"{reg}/web:2.1": "present", f"{reg}/worker:2.1": "present"}
    finally:
        subprocess.run(["umount", "-l", str(_private_cache)], capture_output=True)
    assert not list(_private_cache.iterdir())


# --- a compose file read from a stream ------------------------------------------------------

# How a shell hands compose a file it never wrote (each reads $F): what `docker compose`
# reads, prepull reads.
_STREAMS = {
    "-f -": 'cat "$F" | "$PY" -m bottle prepull --json -f -',
    "-f /dev/stdin, a pipe": 'cat "$F" | "$PY" -m bottle prepull --json -f /dev/stdin',
    "-f /dev/stdin, a file": '"$PY" -m bottle prepull --json -f /dev/stdin < "$F"',
    "-f <(...)": '"$PY" -m bottle prepull --json -f <(cat "$F")',
    "-f a FIFO": 'rm -f p && mkfifo p && { cat "$F" > p & } && "$PY" -m bottle prepull --json -f p',
}


def test_a_compose_file_from_a_stream(tmp_path: Path, _private_cache: Path,
                                      registry_with_two_images: RegistryHandle,
                                      flavor: str) -> None:
    """Each form is read by compose as it would read it; a run again with other content
    behind the same argv resolves that content (no memo, no cached answer keyed on what
    a stream held before)."""
    reg = registry_with_two_images.pull_endpoint
    here = tmp_path / "here"
    here.mkdir()

    def run(form: str, image: str) -> None:
        text = tmp_path / "deploy.yml"
        text.write_text(f"services:\n  app:\n    image: {image}\n")
        r = subprocess.run(["bash", "-c", _STREAMS[form]], cwd=here, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL,
                           env={**os.environ, **_PINNED, "F": str(text), "PY": sys.executable,
                                "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, f"{form}: {r.stderr}"
        got = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
        assert set(got) == {image}, f"{form}: {got}"
        assert docker.engine_has_image(image)

    web, worker = f"{reg}/web:2.1", f"{reg}/worker:2.1"
    try:
        for form in _STREAMS:
            run(form, web)
        time.sleep(2.1)  # past the racy window: a run that could leave a memo now does
        for form in _STREAMS:
            run(form, web)
            _rmi(worker)
            run(form, worker)
    finally:
        _rmi(web)
        _rmi(worker)


def _slow_config(flavor: str, seconds: float, marker: Path, *, deaf: bool = False) -> float:
    """Make the installed compose take `seconds` longer over `config`; `marker` is made
    when that sleep ends (after which compose renders), `<marker>.began` when it begins.
    `deaf`: it ignores SIGINT."""
    wrapper = (Path(os.environ["DOCKER_CONFIG"]) / "cli-plugins" / "docker-compose"
               if flavor == "v2" else
               next(Path(d) / "docker-compose" for d in os.environ["PATH"].split(os.pathsep)
                    if (Path(d) / "docker-compose").is_file()))
    lines = wrapper.read_text().splitlines()
    trap = "trap '' INT; " if deaf else ""
    lines.insert(1, f'case " $* " in *" config "*) {trap}: > "{marker}.began"; '
                    f'sleep {seconds}; : > "{marker}" ;; esac')
    wrapper.write_text("\n".join(lines) + "\n")
    return seconds


def _pull_times(since: float) -> dict[str, float]:
    out = subprocess.run(["docker", "events", f"--since={since:.3f}",
                          f"--until={time.time() + 0.5:.3f}", "--filter=type=image",
                          "--filter=event=pull", "--format={{.TimeNano}} {{.Actor.ID}}"],
                         capture_output=True, text=True, check=True)
    return {ref: int(t) / 1e9 for t, ref in (ln.split() for ln in out.stdout.splitlines())}


def test_images_named_outright_are_pulled_while_compose_renders(
        tmp_path: Path, _private_cache: Path, registry_with_two_images: RegistryHandle,
        flavor: str) -> None:
    """A compose file that names its images outright: they are checked and pulled while
    compose renders (here made to take 3 s), and the report is compose's answer as ever.
    A bad tag so named fails with the same one line: at once, compose stopped, where the
    file leaves compose no other answer (no service builds that image); else once compose
    has confirmed it."""
    reg = registry_with_two_images.pull_endpoint
    web, worker = f"{reg}/web:2.1", f"{reg}/worker:2.1"
    app = tmp_path / "named"
    app.mkdir()
    (app / "compose.yml").write_text(f"services:\n  web:\n    image: {web}\n"
                                     f"  worker:\n    image: \"{worker}\"  # pinned\n")
    _rmi(web)
    assert bottle("prepull", "--quiet", "--image", worker, cwd=app).returncode == 0
    rendered = tmp_path / "compose-rendered"
    delay = _slow_config(flavor, 3, rendered)
    since = time.time()
    r = bottle("prepull", "--json", cwd=app)
    took = time.time() - since
    assert r.returncode == 0, r.stderr
    got = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
    assert got == {web: "pulled", worker: "present"}
    pulled = _pull_times(since)
    assert set(pulled) == {web}
    assert pulled[web] - since < delay < took  # pulled before compose could have answered

    line = (f"bottle: error: prepull: cannot pull {reg}/web:nope: manifest for {reg}/web:nope"
            f" not found: manifest unknown: manifest unknown (stopped before deploy)")
    plain = f"services:\n  web:\n    image: {web}\n  bad:\n    image: {reg}/web:nope\n"
    # A service that builds an image named by interpolation: the failed pull may be that
    # image (then compose builds it), so compose decides and is waited for (its sleep ends:
    # the marker).
    (app / "compose.yml").write_text(plain + "  app:\n    build: .\n"
                                     "    image: ${APP_IMAGE:-local/app:1}\n")
    rendered.unlink()
    r = bottle("prepull", "--quiet", cwd=app)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [line]
    assert rendered.exists()
    # Nothing compose could build under that name (no build; or one that names no image,
    # so builds one compose names): the failed pull is the run's failure, said as before,
    # and compose is stopped (its process group with it: its sleep never ends).
    for text in (plain, plain + "  app:\n    build: .\n"):
        (app / "compose.yml").write_text(text)
        rendered.unlink(missing_ok=True)
        r = bottle("prepull", "--json", cwd=app)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [line]
        got = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
        assert got == {web: "present", f"{reg}/web:nope": "failed"}
    time.sleep(delay + 0.5)
    assert not rendered.exists()


def test_the_head_start_begins_before_compose_is_found(
        tmp_path: Path, _private_cache: Path, registry_with_two_images: RegistryHandle,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A standalone `docker-compose` is asked its version the first time (most of a second
    for v1; made 3 s here). The images a plain file names are pulled meanwhile, and a bad
    tag among them ends the run then: compose's `version` is stopped, `config` never runs."""
    log = compose_flavors.install("v1", tmp_path / "compose", monkeypatch)
    wrapper = tmp_path / "compose" / "bin-v1" / "docker-compose"
    answered = tmp_path / "version-answered"
    lines = wrapper.read_text().splitlines()
    lines.insert(1, f'case " $* " in *" version "*) sleep 3; : > "{answered}" ;; esac')
    wrapper.write_text("\n".join(lines) + "\n")
    reg = registry_with_two_images.pull_endpoint
    web = f"{reg}/web:2.1"
    app = tmp_path / "app"
    app.mkdir()
    (app / "compose.yml").write_text(f"services:\n  web:\n    image: {web}\n"
                                     f"  bad:\n    image: {reg}/web:nope\n")
    _rmi(web)
    try:
        since = time.time()
        r = bottle("prepull", "--json", cwd=app)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            f"bottle: error: prepull: cannot pull {reg}/web:nope: manifest for {reg}/web:nope"
            f" not found: manifest unknown: manifest unknown (stopped before deploy)"]
        got = {i["image"]: i["status"] for i in json.loads(r.stdout)["images"]}
        # (the good pull, if still under way when the bad tag fails, is cut short)
        assert got[f"{reg}/web:nope"] == "failed" and got[web] in ("pulled", "cancelled")
        assert set(got) == {web, f"{reg}/web:nope"}
        assert set(_pull_times(since)) <= {web}
        calls = log.read_text().splitlines()
        assert all(c.startswith("version") for c in calls)  # asked at most, never answered
        assert compose_flavors.config_calls(log) == 0
        time.sleep(3.5)
        assert not answered.exists()  # stopped, with its process group
    finally:
        _rmi(web)


def test_ctrl_c_twice_while_compose_renders(
        tmp_path: Path, _private_cache: Path, registry_with_two_images: RegistryHandle,
        flavor: str) -> None:
    """Ctrl-C while compose renders (here deaf to SIGINT, so stopping it takes the stop
    policy's grace), and again meanwhile: exit 130, one line saying it is still stopping
    (no bottle is involved), then `interrupted`; compose and its children are gone."""
    reg = registry_with_two_images.pull_endpoint
    app = tmp_path / "app"
    app.mkdir()
    (app / "compose.yml").write_text(f"services:\n  web:\n    image: {reg}/web:2.1\n"
                                     "  app:\n    build: .\n"
                                     "    image: ${APP:-127.0.0.1:1/app:dev}\n")
    rendered = tmp_path / "compose-rendered"
    delay = _slow_config(flavor, 8, rendered, deaf=True)
    began = tmp_path / "compose-rendered.began"
    p = spawn("prepull", cwd=app)
    try:
        deadline = time.monotonic() + 60
        while not began.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=60)
    finally:
        p.kill()
        _rmi(f"{reg}/web:2.1")
    assert p.returncode == 130, (err, _out)
    lines = [ln for ln in err.splitlines() if ln]
    assert lines == ["bottle: SIGINT received; still stopping", "bottle: interrupted"], err
    time.sleep(delay - 0.5)
    assert not rendered.exists()


# --- a pull that hangs is cut short -----------------------------------------------------------


class _Silent:
    """A "registry" on 127.0.0.1 that accepts connections and never answers (the engine's
    pull from it hangs until the engine's own timeouts); counts what it accepted and
    what the engine closed."""

    def __init__(self) -> None:
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = self.closed = 0
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted += 1
            self._threads.append(threading.Thread(target=self._hold, args=(conn,),
                                                  daemon=True))
            self._threads[-1].start()

    def _hold(self, conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        self.closed += 1

    def close(self) -> None:
        """Stop, leaving no thread behind (a thread left over stops the digest of later
        tests in this process from forking: it forks only with no other thread). A
        shutdown wakes a thread blocked on the socket; a close does not."""
        import socket

        for sock in (self.server, *self._conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in self._threads:
            t.join(10)


@pytest.fixture
def silent() -> Iterator[_Silent]:
    s = _Silent()
    yield s
    s.close()


def test_a_bad_tag_does_not_wait_for_a_pull_that_hangs(engine: str, tmp_path: Path,
                                                       silent: _Silent) -> None:
    """Beside a pull that hangs, a bad tag is the run's failure as soon as it fails: the
    hanging pull is cut short (`cancelled`), as `docker compose pull` cancels the rest.
    Before, the run waited for the engine to give the hanging pull up (25 s here), and
    then named that one as the failure."""
    hanging, bad = f"127.0.0.1:{silent.port}/tiny:1", "127.0.0.1:1/nothing:here"
    r = bottle("prepull", "--json", "--image", hanging, "--image", bad, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert [(i["image"], i["status"]) for i in json.loads(r.stdout)["images"]] == [
        (hanging, "cancelled"), (bad, "failed")]
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("bottle: error:")]
    assert f"cannot pull {bad}:" in line
    assert silent.accepted >= 1 and silent.closed < silent.accepted  # it was still hanging


def test_ctrl_c_cuts_a_hanging_pull_short(engine: str, tmp_path: Path,
                                          silent: _Silent) -> None:
    """Ctrl-C while a pull hangs: exit 130 at once, not when the engine gives up."""
    p = spawn("prepull", "--image", f"127.0.0.1:{silent.port}/tiny:1", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not silent.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert silent.accepted, "the engine never started the pull"
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=120)
        still_hanging = silent.closed < silent.accepted
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.strip().splitlines() == ["bottle: interrupted"], err
    assert still_hanging  # we were gone while the engine still waited on the registry
