"""A new user's first hour, scripted: the README's commands in a fresh clone, a project
with its own Dockerfile used from a subdirectory, agent arguments with `=`, an
edit/revert/rebuild loop, a failing `docker run`, and prepull of a broken compose file.
Each step asserts the lines the user sees."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, busybox_context
from tests.helpers import bottle, docker_calls


def image_of(tag: str) -> str:
    r = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                       capture_output=True, text=True)
    return r.stdout.strip()


@pytest.fixture
def project(tmp_path: Path, workspace: Path) -> Path:
    """A project with its own agent image (FROM scratch busybox with a node user and a
    stand-in agent that prints its arguments)."""
    proj = tmp_path / "proj"
    ctx = busybox_context(proj / "agent", (
        "RUN mkdir -p /etc /home/node /workspace && "
        "echo 'root:x:0:0::/root:/bin/sh' > /etc/passwd && "
        "echo 'node:x:1000:1000::/home/node:/bin/sh' >> /etc/passwd && "
        "printf 'root:x:0:\\nnode:x:1000:\\n' > /etc/group\n"
        "COPY agent.sh /usr/local/bin/my-agent\n"))
    (ctx / "agent.sh").write_text('#!/bin/sh\necho "project agent"\n'
                                  'for a in "$@"; do echo "arg: [$a]"; done\n')
    (ctx / "agent.sh").chmod(0o755)
    (ctx / "version.txt").write_text("1\n")
    (proj / "bottle.toml").write_text('context = "agent"\ncommand = "my-agent"\n')
    (proj / "src" / "deep").mkdir(parents=True)
    return proj


def test_the_readme_commands_in_a_fresh_clone(tmp_path: Path, engine: str) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block, "the README's quick start block"
    lines = [ln.split("#")[0].strip() for ln in block.group(1).splitlines() if ln.strip()]
    assert len(lines) == 2 and "bottle launch" in lines[0] and "pytest" in lines[1]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    assert (clone / "scripts" / "setup").stat().st_mode & 0o111
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {"PYTHONPATH": str(clone)}
    first = subprocess.run([sys.executable, "-m", "bottle", "launch", "--headless"], cwd=ws,
                           capture_output=True, text=True, env={**os.environ, **env})
    assert first.returncode == 0, first.stderr
    assert "build: built" in first.stderr and "agent: claude (bot-bottle example stand-in)" \
        in first.stdout
    second = subprocess.run([sys.executable, "-m", "bottle", "launch", "--headless"], cwd=ws,
                            capture_output=True, text=True, env={**os.environ, **env})
    assert second.returncode == 0 and "build: cache hit" in second.stderr


def test_a_project_used_from_a_subdirectory(project: Path) -> None:
    deep = project / "src" / "deep"
    r = bottle("launch", "--headless", "--workspace", str(project), "--", "--model=opus",
               "--print", "set x=1 and fix it", "", "a=b", cwd=deep)
    assert r.returncode == 0, r.stderr
    assert f"config: {project / 'bottle.toml'}" in r.stderr  # said, as not in the cwd
    assert r.stdout.splitlines() == ["project agent", "arg: [--model=opus]", "arg: [--print]",
                                     "arg: [set x=1 and fix it]", "arg: []", "arg: [a=b]"]


def test_doit_in_a_checkout_passes_agent_arguments_verbatim(project: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(project),
         "launch", "--headless", "--workspace", str(project), "--", "--model=opus", "x=1"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["project agent", "arg: [--model=opus]", "arg: [x=1]"]


def test_edit_revert_rebuild_keeps_the_tag_on_the_image_in_use(project: Path,
                                                              recording_docker: Path) -> None:
    version = project / "agent" / "version.txt"
    first = bottle("build", cwd=project)
    assert first.returncode == 0 and "build: built" in first.stderr, first.stderr
    info = bottle("info", "build", cwd=project)
    assert info.returncode == 0 and info.stdout.startswith("build: up to date: cache hit")
    version.write_text("2\n")
    info = bottle("info", "build", cwd=project)
    assert info.returncode == 0
    assert info.stdout.strip() == "build: would run: changed: version.txt"
    second = bottle("build", cwd=project)
    assert "build: built" in second.stderr and "changed: version.txt" in second.stderr
    version.write_text("1\n")
    recording_docker.write_text("")
    third = bottle("build", cwd=project)
    assert third.returncode == 0 and "build: cache hit" in third.stderr, third.stderr
    calls = docker_calls(recording_docker)
    assert [c.split()[0] for c in calls] == ["tag"]  # one `docker tag`, nothing else
    first_id = first.stderr.split("built ")[1].split()[0]
    tagged = calls[0].split()[-1]
    assert image_of(tagged).removeprefix("sha256:").startswith(first_id)
    recording_docker.write_text("")
    assert bottle("build", cwd=project).returncode == 0
    assert docker_calls(recording_docker) == []  # the warm no-op: no docker call at all


def test_changing_only_the_tag_needs_no_build(project: Path) -> None:
    assert bottle("build", cwd=project).returncode == 0
    with (project / "bottle.toml").open("a") as f:
        f.write('image = "my-agent:dev"\n')
    r = bottle("build", cwd=project)
    assert r.returncode == 0 and "build: cache hit" in r.stderr, r.stderr
    assert image_of("my-agent:dev")
    assert bottle("launch", "--headless", "--workspace", str(project),
                  cwd=project).returncode == 0
    subprocess.run(["docker", "rmi", "my-agent:dev"], capture_output=True)


def test_a_failing_docker_run_says_why_in_one_line(project: Path) -> None:
    with (project / "bottle.toml").open("a") as f:
        f.write('network = "bogusnet"\n')
    r = bottle("launch", "--headless", "--workspace", str(project), cwd=project)
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("bottle: error:")]
    assert errors == ["bottle: error: network bogusnet not found "
                      "(docker network ls lists them)"]
    assert "build:" not in r.stderr  # said before the image is built, not after


def test_rebuilds_leave_no_dangling_images_after_gc(project: Path) -> None:
    version = project / "agent" / "version.txt"
    ids = []
    for v in ("1", "2", "3"):
        version.write_text(v + "\n")
        r = bottle("build", cwd=project)
        ids.append(r.stderr.split("built ")[1].split()[0])
    for p in (project.parent / "cache" / "refs" / "context").glob("*.json"):
        os.utime(p, (1, 1))  # long unused...
    assert "cache hit" in bottle("build", cwd=project).stderr  # ...but the one in use
    r = bottle("cache_gc", "--max-age", "30d", cwd=project)
    assert r.returncode == 0, r.stderr
    assert sum(f"removed image {i}" in r.stderr for i in ids[:2]) == 2
    assert not image_of(ids[0]) and image_of(ids[2])  # the one in use stays


def test_prepull_of_a_broken_compose_file_says_where_and_why(tmp_path: Path,
                                                             engine: str) -> None:
    (tmp_path / "compose.yml").write_text("services:\n  web:\n    image: nginx\n  bad\n")
    r = bottle("prepull", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("bottle: error:")]
    assert len(errors) == 1
    assert "line 4" in errors[0] and "compose.yml" in errors[0], errors[0]


def test_info_on_a_local_base_makes_nothing(tmp_path: Path, engine: str) -> None:
    """`bottle info build` with `base = "local"` and no base yet says the build would run;
    it does not run mmdebstrap (minutes) to find that out."""
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "mmdebstrap.log"
    (fake / "mmdebstrap").write_text(
        f'#!/bin/sh\necho "$@" >> {log}\n[ "$1" = --version ] && echo "mmdebstrap 1.3.5"\n'
        'exit 0\n')
    (fake / "mmdebstrap").chmod(0o755)
    proj = tmp_path / "p"
    proj.mkdir()
    (proj / "bottle.toml").write_text('agent = "claude"\nbase = "local"\n')
    r = bottle("info", "build", cwd=proj,
               env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("build: would run: ")
    r = bottle("info", "base", cwd=proj, env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    tag = next(w for w in r.stdout.split() if w.startswith("bot-bottle/base:"))
    present = subprocess.run(["docker", "image", "inspect", tag],
                             capture_output=True).returncode == 0  # another test made it
    assert r.stdout == (f"base: up to date: cache hit {tag}\n" if present else
                        f"base: would run: {tag} not made yet (mmdebstrap, a few minutes "
                        "once)\n")
    assert log.read_text().split() == ["--version"]  # asked once (then remembered), no build


def test_info_names_what_would_stop_the_task(tmp_path: Path, engine: str) -> None:
    (tmp_path / "bottle.toml").write_text('context = "nope"\n')
    for task in ("build", "pack"):
        r = bottle("info", task, cwd=tmp_path)
        assert r.returncode == 1 and r.stdout == ""
        assert r.stderr.strip() == (
            f"bottle: error: build context {tmp_path / 'nope'} is not a directory")
