"""`bottle build` / `bottle pack` with the real engine and a stand-in smolvm.

The second run of anything unchanged calls no docker at all (a recording `docker` is
first on PATH); Dockerfile and context edits rebuild and repack; ignored files don't.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import busybox_context
from tests.helpers import bottle, docker_calls, smolvm_calls, spawn


@pytest.fixture
def project(tmp_path: Path, engine: str) -> Path:
    proj = tmp_path / "proj"
    ctx = busybox_context(proj / "agent", f'LABEL run="{tmp_path.name}"\nCOPY app /app\n')
    (ctx / "app").mkdir()
    (ctx / "app" / "main.sh").write_text("echo hi\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    (proj / "bottle.toml").write_text(f'context = "agent"\nimage = "bb-it-{tmp_path.name}:1"\n')
    return proj


def packed_image(artifact: Path) -> str:
    return str(json.loads(artifact.read_text().splitlines()[0])["packed"])


@pytest.mark.parametrize("smolvm_version", ["1.32.2", "1.7.0", "0.8.0"])
def test_cold_warm_edit_cycle(project: Path, fake_smolvm: Path, recording_docker: Path,
                              smolvm_version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SMOLVM_VERSION", smolvm_version)
    cold = bottle("pack", cwd=project)
    assert cold.returncode == 0, cold.stderr
    artifact = Path(cold.stdout.strip().splitlines()[-1])
    assert artifact.name.endswith(".smolmachine") and artifact.is_file()
    builds = [c for c in docker_calls(recording_docker) if c.startswith("build")]
    assert len(builds) == 1 and "first build" in cold.stderr and "pack: packed" in cold.stderr
    image_id = packed_image(artifact)
    packs = [c for c in smolvm_calls(fake_smolvm) if c[:2] == ["pack", "create"]]
    src = packs[0][packs[0].index("--image") + 1]
    if tuple(map(int, smolvm_version.split("."))) >= (1, 31, 0):
        assert src.endswith(".image.tar")  # straight from the archive, no registry
    else:
        assert src.startswith("127.0.0.1:") and "/bot-bottle:" in src

    # Warm: not one docker call, not one smolvm call.
    recording_docker.write_text("")
    fake_smolvm.write_text("")
    warm = bottle("pack", cwd=project)
    assert warm.returncode == 0, warm.stderr
    assert docker_calls(recording_docker) == [] and smolvm_calls(fake_smolvm) == []
    assert f"pack: cache hit {image_id[:16]}" in warm.stderr
    assert warm.stdout.strip() == str(artifact)

    # An ignored file changes nothing.
    (project / "agent" / "debug.log").write_text("noise")
    assert bottle("pack", cwd=project).returncode == 0
    assert docker_calls(recording_docker) == []

    # A context edit rebuilds and repacks.
    (project / "agent" / "app" / "main.sh").write_text("echo changed\n")
    edited = bottle("pack", cwd=project)
    assert edited.returncode == 0, edited.stderr
    assert "changed: app/main.sh" in edited.stderr
    new_artifact = Path(edited.stdout.strip().splitlines()[-1])
    assert packed_image(new_artifact) != image_id

    # A Dockerfile edit too.
    recording_docker.write_text("")
    df = project / "agent" / "Dockerfile"
    df.write_text(df.read_text() + "ENV X=1\n")
    again = bottle("pack", cwd=project)
    assert again.returncode == 0 and "Dockerfile changed" in again.stderr
    assert any(c.startswith("build") for c in docker_calls(recording_docker))


def test_build_task_warm_is_docker_free(project: Path, recording_docker: Path) -> None:
    first = bottle("build", cwd=project)
    assert first.returncode == 0, first.stderr
    assert "build: built" in first.stderr
    recording_docker.write_text("")
    second = bottle("build", cwd=project)
    assert second.returncode == 0 and "build: cache hit" in second.stderr
    assert "(image " in second.stderr  # doit itself found the task up to date, right away
    assert docker_calls(recording_docker) == []
    # The image going away is noticed (through the engine API) and rebuilt.
    image_id = [line for line in first.stderr.splitlines() if "build: built" in line]
    import subprocess

    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}",
                          f"bb-it-{project.parent.name}:1"], capture_output=True, text=True)
    subprocess.run(["docker", "rmi", "-f", out.stdout.strip()], capture_output=True)
    third = bottle("build", cwd=project)
    assert third.returncode == 0 and "build: built" in third.stderr, (image_id, third.stderr)


def test_a_no_op_says_what_doit_says_without_loading_it(project: Path,
                                                       fake_smolvm: Path) -> None:
    """`bottle build` and `bottle pack` up to date are answered by their lookups before
    doit loads; doit itself (`bottle run TASK`) says exactly the same."""
    assert bottle("pack", cwd=project).returncode == 0
    for task in ("build", "pack"):
        fast = bottle(task, cwd=project, env={"PYTHONPROFILEIMPORTTIME": "1"})
        via_doit = bottle("run", task, cwd=project)
        assert fast.returncode == via_doit.returncode == 0, fast.stderr
        imported = [ln.rsplit("|", 1)[-1].strip() for ln in fast.stderr.splitlines()
                    if ln.startswith("import time:")]
        assert "bottle.image" in imported and "doit" not in imported
        said = [ln for ln in fast.stderr.splitlines() if not ln.startswith("import time:")]
        assert (fast.stdout, said) == (via_doit.stdout, via_doit.stderr.splitlines())
        assert f"{task}: cache hit" in via_doit.stderr


def test_concurrent_cold_packs_build_and_pack_once(project: Path, fake_smolvm: Path,
                                                   recording_docker: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SMOLVM_PACK_SLEEP", "1")
    procs = [spawn("pack", cwd=project) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    artifacts = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(artifacts) == 1
    assert len([c for c in docker_calls(recording_docker) if c.startswith("build")]) == 1
    assert len([c for c in smolvm_calls(fake_smolvm) if c[:2] == ["pack", "create"]]) == 1


@pytest.mark.parametrize("smolvm_version", ["1.32.2", "1.7.0"])
def test_sigkill_mid_pack_leaves_nothing_visible(project: Path, fake_smolvm: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 smolvm_version: str, _private_cache: Path,
                                                 ) -> None:
    monkeypatch.setenv("FAKE_SMOLVM_VERSION", smolvm_version)
    monkeypatch.setenv("FAKE_SMOLVM_PACK_SLEEP", "60")
    p = spawn("pack", cwd=project)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            c[:2] == ["pack", "create"] for c in smolvm_calls(fake_smolvm)):
        time.sleep(0.1)
    assert p.poll() is None
    registries = _children_named(p.pid, "docker-registry")
    # Old smolvm packs from a registry, new smolvm straight from the archive.
    assert len(registries) == (1 if smolvm_version == "1.7.0" else 0)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    objects = _private_cache / "objects" / "smolmachine"
    assert not objects.exists() or not list(objects.iterdir())
    deadline = time.monotonic() + 10  # the registry dies with its owner
    while any(Path(f"/proc/{pid}").exists() for pid in registries) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_is_running(pid) for pid in registries)
    monkeypatch.setenv("FAKE_SMOLVM_PACK_SLEEP", "0")
    done = bottle("pack", cwd=project)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip().splitlines()[-1]).is_file()
    assert [p.name for p in (_private_cache / "tmp").iterdir()] == []


def _children_named(parent: int, name: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent and comm == name[:15]:
            found.append(int(d.name))
    return found


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, engine: str) -> None:
    (tmp_path / "bottle.toml").write_text('context = "nowhere"\n')
    r = bottle("build", cwd=tmp_path)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        f"bottle: error: build context {tmp_path / 'nowhere'} is not a directory"]
    (tmp_path / "nowhere").mkdir()
    r = bottle("build", cwd=tmp_path)
    assert r.returncode != 0 and "Dockerfile not found" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
