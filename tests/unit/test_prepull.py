"""Seed 003's scenarios: present -> skip with zero network; missing -> pull only the
missing; a pull failure -> one clear error; nothing resolved -> a note and exit 0.

A stand-in `docker` first on PATH records every call and answers `image inspect`
and `pull` from $PRESENT / $BAD."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bottle import prepull as pp
from tests.helpers import bottle

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1 $2" in
  "compose version") echo "docker: 'compose' is not a docker command." >&2; exit 1 ;;
  "image inspect") for p in $PRESENT; do
                     [ "$p" = "$5" ] && { echo '{"Id":"sha256:1"}'; exit 0; }
                   done
                   echo "Error: No such image: $5" >&2; exit 1 ;;
  "pull -q") [ "$3" = "--" ] || { echo "pull without --" >&2; exit 2; }
             for b in $BAD; do [ "$b" = "$4" ] && {
               echo "Error response from daemon: manifest for $4 not found: manifest unknown" >&2
               exit 1; }; done
             echo "$4"; exit 0 ;;
esac
exit 0
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(calls))
    # An engine only the docker CLI can reach (as over ssh): every check goes through it.
    monkeypatch.setenv("DOCKER_HOST", "ssh://unit-test-engine")
    return calls


def pulls(calls: Path) -> list[str]:
    return [c.split()[-1] for c in calls.read_text().splitlines() if c.startswith("pull")]


def want(*images: str) -> list[pp.Wanted]:
    return [pp.Wanted(i, (), False) for i in images]


def test_present_images_are_skipped_with_zero_network(fake_docker: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENT", "img-a:1 img-b:2")
    out = pp.prepull(want("img-a:1", "img-b:2"))
    assert [o.status for o in out] == ["present", "present"]
    assert pulls(fake_docker) == []


def test_only_the_missing_image_is_pulled(fake_docker: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENT", "img-a:1")
    out = pp.prepull(want("img-a:1", "img-b:2"))
    assert pulls(fake_docker) == ["img-b:2"]
    assert {o.image: o.status for o in out} == {"img-a:1": "present", "img-b:2": "pulled"}


def test_pull_failure_is_one_clear_error(fake_docker: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD", "img-b:nope")
    with pytest.raises(pp.PrepullFailed) as err:
        pp.prepull(want("img-a:1", "img-b:nope"), jobs=1)
    msg = str(err.value)
    assert msg == ("prepull: cannot pull img-b:nope: manifest for img-b:nope not found: "
                   "manifest unknown (stopped before deploy)")
    assert {o.image: o.status for o in err.value.outcomes} == {"img-a:1": "pulled",
                                                               "img-b:nope": "failed"}


def test_after_a_failure_no_new_pull_starts(fake_docker: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD", "bad:1")
    with pytest.raises(pp.PrepullFailed) as err:
        pp.prepull(want("bad:1", "b:1", "c:1", "d:1"), jobs=1)
    assert pulls(fake_docker) == ["bad:1"]
    assert [o.status for o in err.value.outcomes] == ["failed"] + ["cancelled"] * 3


def test_a_buildable_service_only_warns(fake_docker: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD", "myorg/app:dev")
    out = pp.prepull([pp.Wanted("myorg/app:dev", ("app",), True)])
    assert out[0].status == "failed"  # compose will build it: not fatal


def test_nothing_resolved_is_a_note_and_exit_0(fake_docker: Path, tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text("services:\n  app:\n    build: .\n")
    r = bottle("prepull", "--file", "compose.yml", cwd=tmp_path,
               env={"PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    assert "no images resolved" in r.stderr
    assert pulls(fake_docker) == []


def test_explicit_images_need_no_compose(fake_docker: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENT", "a:1")
    r = bottle("prepull", "--image", "a:1", "--image", "b:2", "--image", "a:1", "--json",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import json

    data = json.loads(r.stdout)
    assert [(i["image"], i["status"]) for i in data["images"]] == [("a:1", "present"),
                                                                  ("b:2", "pulled")]
    assert pulls(fake_docker) == ["b:2"]


class TestModel:
    MODEL = {"services": {
        "web": {"image": "r/web:2.1"},
        "cache": {"image": "r/web:2.1"},                      # duplicate: pulled once
        "builder": {"build": {"context": "/b"}},              # build only
        "generated": {"build": {"context": "/b"}, "image": "proj-generated"},
        "tagged": {"build": {"context": "/b"}, "image": "org/tagged:1"},
        "debug": {"image": "r/debug:1", "profiles": ["debug"]},
    }}

    def test_images(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
        proj = tmp_path / "proj"
        proj.mkdir()
        got = pp.images_from_model(self.MODEL, project_dir=proj)
        assert [(w.image, w.services, w.buildable) for w in got] == [
            ("r/web:2.1", ("web", "cache"), False), ("org/tagged:1", ("tagged",), True)]

    def test_profiles_from_param_and_dotenv(self, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
        proj = tmp_path / "proj"
        proj.mkdir()
        assert "r/debug:1" in [w.image for w in pp.images_from_model(
            self.MODEL, project_dir=proj, profiles=["debug"])]
        (proj / ".env").write_text("COMPOSE_PROFILES=debug,other\n")
        assert "r/debug:1" in [w.image for w in pp.images_from_model(self.MODEL,
                                                                     project_dir=proj)]


class TestResolutionCache:
    """compose's answer is reused only while nothing it depends on has changed."""

    @pytest.fixture
    def app(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        bin_dir = tmp_path / "cbin"
        bin_dir.mkdir()
        calls = tmp_path / "compose-calls"
        # A docker-compose that renders web's image from $VERSION (as compose interpolates).
        (bin_dir / "docker-compose").write_text(
            f'#!/bin/sh\necho x >> {calls}\nV=$(sed -n "s/^VERSION=//p" .env)\n'
            'echo "services: {web: {image: r/web:${TAG:-$V}}}"\n')
        (bin_dir / "docker-compose").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("TAG", raising=False)
        app = tmp_path / "app"
        app.mkdir()
        (app / "compose.yml").write_text("services:\n  web:\n    image: r/web:${TAG:-${VERSION}}\n")
        (app / ".env").write_text("VERSION=1\n")
        return app

    def resolve(self, app: Path) -> tuple[list[str], int]:
        got = pp.resolve(project_dir=app, cache_dir=app.parent / "rcache")
        calls = app.parent / "compose-calls"
        return [w.image for w in got], len(calls.read_text().splitlines())

    def test_reused_until_an_input_changes(self, app: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        assert self.resolve(app) == (["r/web:1"], 1)
        assert self.resolve(app) == (["r/web:1"], 1)  # cached: compose not run
        (app / ".env").write_text("VERSION=2\n")
        assert self.resolve(app) == (["r/web:2"], 2)
        monkeypatch.setenv("TAG", "edge")  # a variable the file references
        assert self.resolve(app) == (["r/web:edge"], 3)
        monkeypatch.setenv("UNRELATED", "x")  # one it doesn't
        assert self.resolve(app) == (["r/web:edge"], 3)
        (app / "compose.yml").write_text((app / "compose.yml").read_text() + "# edit\n")
        assert self.resolve(app) == (["r/web:edge"], 4)

    def test_not_cached_when_other_files_could_be_read(self, app: Path) -> None:
        (app / "compose.yml").write_text("services:\n  web:\n    extends:\n      file: b.yml\n")
        assert pp.resolution_key([], app, [], v2=False) is None
        (app / "compose.yml").unlink()
        assert pp.resolution_key([], app, [], v2=False) is None  # compose would search up
