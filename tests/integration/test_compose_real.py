"""prepull's resolution against compose's own answer, on real projects' compose files
(/work/shared/data/compose-real or $COMPOSE_REAL: awesome-compose, airflow, sentry
self-hosted, immich, netbox-docker, temporal, compose's own fixtures), for compose v2 and
v1, with the default profile and with each profile the project declares.

The answer: the services compose would start (v2: `config --services`; v1: the names in
`config --hash=*`, which is v1's own profile selection and asks the engine about images),
each with its image as compose rendered it, less those `compose up` never pulls (no image,
pull_policy never or build). Where compose refuses the project, prepull must fail with one
line; where compose renders an image that is not a valid reference, prepull must name it."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bottle import prepull as pp
from bottle import reference
from bottle.errors import BottleError
from bottle.tools import compose
from tests import compose_flavors

DATA = Path(os.environ.get("COMPOSE_REAL", "/work/shared/data/compose-real"))
PROJECTS = sorted(p.name for p in DATA.iterdir() if (p / "PROVENANCE").is_file()) \
    if DATA.is_dir() else []
# Projects that need a `.env` beside them (their env_file): they are deployed with
# `-f <their compose file> --project-directory <a directory with that .env>`, the .env
# made from the example the project ships (or empty).
ELSEWHERE = {"immich": ("docker-compose.yml", "example.env"),
             "airflow": ("docker-compose.yaml", None)}


@dataclass(frozen=True)
class Deployment:
    project: Path
    files: tuple[Path, ...] = ()
    project_dir: Path | None = None

    def args(self) -> list[str]:
        return [*(f"--file={f}" for f in self.files),
                *([f"--project-directory={self.project_dir}"] if self.project_dir else [])]


def deployment(name: str, tmp: Path) -> Deployment:
    project = DATA / name
    if name not in ELSEWHERE:
        return Deployment(project)
    compose_file, example = ELSEWHERE[name]
    pdir = tmp / f"{name}-deploy"
    pdir.mkdir(exist_ok=True)
    (pdir / ".env").write_bytes((project / example).read_bytes() if example else b"")
    return Deployment(project, (project / compose_file,), pdir)


def _compose(flavor: str, d: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    prefix = ["docker", "compose"] if flavor == "v2" else ["docker-compose"]
    return subprocess.run([*prefix, *d.args(), *args], cwd=d.project, capture_output=True,
                          text=True, timeout=120, check=False)


_PROFILES: dict[str, list[str]] = {}
_ANSWERS: dict[tuple[str, str, str | None], set[str] | None] = {}


def _declared_profiles(d: Deployment) -> list[str]:
    if d.project.name not in _PROFILES:
        _PROFILES[d.project.name] = []
        for flavor in compose_flavors.FLAVORS:  # v2 first: it reads more projects
            r = _compose(flavor, d, "config", "--profiles")
            if r.returncode == 0:
                _PROFILES[d.project.name] = [p for p in r.stdout.split() if p]
                break
    return _PROFILES[d.project.name]


def _pulled(spec: dict[str, Any]) -> bool:
    return bool(spec.get("image")) and spec.get("pull_policy") not in ("never", "build")


def expected(flavor: str, d: Deployment, profile: str | None) -> set[str] | None:
    """The images compose says the deploy pulls, or None when compose refuses."""
    key = (flavor, d.project.name, profile)
    if key not in _ANSWERS:
        _ANSWERS[key] = _ask(flavor, d, profile)
    return _ANSWERS[key]


def _ask(flavor: str, d: Deployment, profile: str | None) -> set[str] | None:
    prof = [f"--profile={profile}"] if profile else []
    if flavor == "v2":
        names = _compose(flavor, d, *prof, "config", "--services")
        model = _compose(flavor, d, *prof, "config", "--format", "json")
        if names.returncode or model.returncode:
            return None
        services = json.loads(model.stdout)["services"]
    else:
        names = _compose(flavor, d, *prof, "config", "--hash=*")
        model = _compose(flavor, d, "config")
        if names.returncode or model.returncode:
            return None
        services = yaml.safe_load(model.stdout)["services"]
    started = [line.split()[0] for line in names.stdout.splitlines() if line.strip()]
    return {services[s]["image"] for s in started if _pulled(services[s])}


def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("COMPOSE_")]:
        monkeypatch.delenv(k)


@pytest.mark.skipif(not PROJECTS, reason=f"no compose-real data at {DATA}")
@pytest.mark.parametrize("flavor", compose_flavors.FLAVORS)
@pytest.mark.parametrize("name", PROJECTS)
def test_resolution_is_composes_answer(flavor: str, name: str, engine: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_environ(monkeypatch)
    log = compose_flavors.install(flavor, tmp_path, monkeypatch)
    d = deployment(name, tmp_path)
    monkeypatch.chdir(d.project)
    profiles = [None, *_declared_profiles(d)]
    tally = dict.fromkeys(("match", "match, not cacheable", "refused", "bad ref",
                           "head start", "sure"), 0)
    for profile in profiles:
        want = expected(flavor, d, profile)
        chosen = [profile] if profile else []

        def resolve(chosen: list[str] = chosen) -> list[pp.Wanted]:
            return pp.resolve(files=d.files, project_dir=d.project_dir, profiles=chosen,
                              cache_dir=tmp_path / "cache")

        if want is None:
            with pytest.raises(BottleError) as err:
                resolve()
            assert "\n" not in str(err.value)
            tally["refused"] += 1
            continue
        bad = sorted(i for i in want if not _valid(i))
        if bad:
            with pytest.raises(BottleError, match="bad image reference") as err:
                resolve()
            assert any(repr(b) in str(err.value) for b in bad)
            tally["bad ref"] += 1
            continue
        calls = compose_flavors.config_calls(log)
        resolved = resolve()
        assert {w.image for w in resolved} == want, profile
        # The head start (images named outright, pulled while compose renders) is only
        # ever what compose then wants, each pulled when missing.
        only = pp._single_file(compose.inputs(d.files, d.project_dir, Path.cwd(), os.environ),
                               d.files, os.environ)
        early = set(pp.literal_images(only.read_bytes())) if only else set()
        assert early <= want, profile
        assert all(w.policy == pp.MISSING for w in resolved if w.image in early), profile
        # Those whose failed pull is taken as the run's failure before compose answers:
        # wanted, and not built by compose.
        sure = set(pp.sure_images(only.read_bytes())) if only else set()
        assert sure <= early and not any(w.buildable for w in resolved if w.image in sure)
        tally["sure"] += bool(sure)
        tally["head start"] += bool(early)
        assert {w.image for w in resolve()} == want, profile  # from the resolution cache
        cacheable = pp.resolution_key(compose.find(), d.files, d.project_dir, chosen,
                                      Path.cwd(), os.environ) is not None
        assert compose_flavors.config_calls(log) == calls + (1 if cacheable else 2)
        tally["match" if cacheable else "match, not cacheable"] += 1
    print(f"compose-real {flavor} {name}: {len(profiles)} profile cases {tally}")


def _valid(image: str) -> bool:
    try:
        reference.parse(image)
    except BottleError:
        return False
    return True


def test_v1_and_v2_oracles_agree(engine: str, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Where both composes read a project, their answers are the same: the oracle above is
    compose's, not an echo of our code."""
    if not PROJECTS:
        pytest.skip(f"no compose-real data at {DATA}")
    _clean_environ(monkeypatch)
    both = 0
    for name in PROJECTS:
        d = deployment(name, tmp_path)
        for profile in [None, *_declared_profiles(d)]:
            answers = []
            for flavor in compose_flavors.FLAVORS:
                with monkeypatch.context() as m:
                    compose_flavors.install(flavor, tmp_path, m)
                    answers.append(expected(flavor, d, profile))
            if None not in answers:
                assert answers[0] == answers[1], (name, profile)
                both += 1
    print(f"compose-real: v1 and v2 agree on {both} project/profile cases")
    assert both >= 20
