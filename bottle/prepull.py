"""`prepull`: warm the local image store for a compose deployment before it deploys.

Images are resolved by compose itself (v2 first, v1 as the fallback): the files it finds,
the project's `.env`, the interpolation and the profiles are compose's. What the deploy
would pull is pulled now, by each service's `pull_policy` as `compose up` reads it: a
present image is skipped without touching the network (`missing`, the default), `always`
pulls anyway, `daily`/`weekly`/`every_<duration>` pull an image tagged longer ago than
that, `never` and `build` are left alone. Missing images are pulled several at a time; a
failure stops the job before any deploy with one line naming the image and the reason.
Every image is checked as a reference before it gets near an argv.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import xxhash

from bottle import pulling, reference
from bottle.errors import BottleError
from bottle.pulling import Outcome
from bottle.tools import _http, _proc, compose, docker
from cache.atomic import write_atomic
from cache.record import asdict, dataclass

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from datetime import datetime
    from typing import Any

MISSING, ALWAYS = "missing", "always"


@dataclass(frozen=True)
class Wanted:
    image: str
    services: tuple[str, ...]
    buildable: bool  # compose builds it when the pull fails, so a failure only warns
    policy: str = MISSING  # missing | always | refresh:<seconds>


# --- pull policies, as compose-go's GetPullPolicy and compose's mustPull read them ---------

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_EVERY = re.compile(r"(?:[0-9]+[wdhms])+")


def policy_of(spec: Mapping[str, Any]) -> str | None:
    """What `compose up` does about a service's image: None (never pulls it), `missing`,
    `always` or `refresh:<seconds>`."""
    value = str(spec.get("pull_policy") or MISSING)
    if value in ("never", "build"):
        return None
    if value == ALWAYS:
        return ALWAYS
    every = {"daily": "1d", "weekly": "1w"}.get(value) or value.removeprefix("every_")
    if value != every and _EVERY.fullmatch(every):
        secs = sum(int(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)([wdhms])", every))
        return f"refresh:{secs}"
    return MISSING  # missing, if_not_present, and whatever else compose-go reads as missing


def _merge(a: str, b: str) -> str:
    if ALWAYS in (a, b):
        return ALWAYS
    refresh = [int(p.split(":")[1]) for p in (a, b) if p.startswith("refresh:")]
    return f"refresh:{min(refresh)}" if refresh else MISSING


def _checked(image: str, services: Sequence[str]) -> str:
    try:
        reference.parse(image)
    except BottleError as err:
        where = f"service {', '.join(services)}: " if services else ""
        raise BottleError(f"prepull: {where}{err}") from None
    return image


def _enabled(spec: Mapping[str, Any], active: set[str] | None) -> bool:
    profiles = spec.get("profiles")
    return active is None or not profiles or bool(active & {str(p) for p in profiles})


def images_from_model(
    model: Mapping[str, Any], *, active_profiles: set[str] | None = None,
) -> list[Wanted]:
    """What the deploy would pull. `active_profiles`: None when compose already dropped the
    services the profiles disable (v2); else the profiles to enable (v1)."""
    services = {svc: spec or {} for svc, spec in (model.get("services") or {}).items()
                if _enabled(spec or {}, active_profiles)}
    built = {spec.get("image") for spec in services.values() if "build" in spec}
    wanted: dict[str, Wanted] = {}

    def add(image: str, svc: str, policy: str, buildable: bool) -> None:
        prev = wanted.get(image)
        if prev is not None:
            svcs = prev.services if svc in prev.services else (*prev.services, svc)
            wanted[image] = Wanted(image, svcs, prev.buildable, _merge(prev.policy, policy))
        else:
            wanted[image] = Wanted(image, (svc,), buildable, policy)

    for svc, spec in services.items():
        image = spec.get("image")
        if image:
            _checked(str(image), [svc])
        policy = policy_of(spec)
        if image and policy and not spec.get("provider"):
            add(str(image), svc, policy, image in built)
        for vol in spec.get("volumes") or []:
            if isinstance(vol, dict) and vol.get("type") == "image" and vol.get("source"):
                add(_checked(str(vol["source"]), [svc]), svc, MISSING, False)
    return list(wanted.values())


# --- resolution, and the cache of compose's answer ----------------------------------------

_VAR = re.compile(rb"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def resolution_key(
    which: compose.Compose, files: Sequence[Path], project_dir: Path | None,
    profiles: Sequence[str], cwd: Path, environ: Mapping[str, str],
    found: compose.Inputs | None = None, named: set[str] | None = None,
) -> str | None:
    """A digest of every input that can change what compose renders, or None when they
    cannot all be known (then nothing is cached): which compose, the arguments, the
    directory, the compose files, every `.env` and default-file place compose may look at
    (present or not), the COMPOSE_*/DOCKER_* environment and every variable the files name.
    Left out: `env_file` contents (a container's environment, never an image, profile or
    policy), so a cached answer can outlive an env_file the deploy will miss. `found`: what
    `compose.inputs` gives for these arguments, when the caller has it already; `named`
    gets the names of the variables the files name."""
    found = found or compose.inputs(files, project_dir, cwd, environ)
    if found is None:
        return None
    h = xxhash.xxh3_128()
    h.update(json.dumps([which.identity(), str(cwd), [str(f) for f in files],
                         str(project_dir or ""), list(profiles)]).encode())
    names: set[bytes] = set()
    for path in (*found.compose_files, *found.watched):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            h.update(b"\0absent\0" + bytes(path))
            continue
        except OSError:
            return None
        if path in found.compose_files and compose.reads_other_files(data):
            return None
        h.update(b"\0file\0" + bytes(path) + b"\0" + xxhash.xxh3_128_digest(data))
        names |= set(_VAR.findall(data))
    env = {n for n in environ if n.startswith(("COMPOSE_", "DOCKER_"))}
    env |= {n.decode() for n in names}
    if named is not None:
        named |= {n.decode() for n in names}
    h.update(json.dumps({n: environ.get(n) for n in sorted(env)}).encode())
    return h.hexdigest()


class Inputs:
    """What a resolution read (by content) and looked at (by stat), once all are known."""

    def __init__(self) -> None:
        self.known = False
        self.read: list[str] = []
        self.stat: list[str] = []
        self.env: set[str] = set()  # variables the files name (compose interpolates them)


def _load(record: Path) -> list[Wanted] | None:
    try:
        return [Wanted(w["image"], tuple(w["services"]), w["buildable"], w["policy"])
                for w in json.loads(record.read_bytes())]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- a head start: the images a compose file names outright -------------------------------

# A block mapping's key line: indent, plain key, and what follows `: ` (or nothing).
_KEY_LINE = re.compile(r"( *)([A-Za-z0-9_][A-Za-z0-9_.-]*|<<):(?: +(.*?))? *$")
# Keys after which a service's image may not be the one it names, or not be pulled.
_SERVICE_UNSURE = frozenset(("profiles", "pull_policy", "provider", "extends", "<<"))
# What YAML (1.1 or 1.2) reads as other than a string: null, booleans, numbers, times.
_NOT_TEXT = re.compile(r"(?i:y|n|yes|no|true|false|on|off|null|~)"
                       r"|[-+.0-9][0-9a-fA-F_.:xXoObBeE+-]*")
_QUOTED = re.compile(r'"([^"\\]*)"|\'([^\']*)\'')  # with no escape in it
_QUOTED_SPAN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'')


def _ends_here(text: str) -> bool:
    """Whether every flow collection and quoted scalar a line starts ends on it (quotes
    read where a scalar may start, brackets counted outside them; a plain scalar with an
    odd bracket counts as not ending: the reading gives up)."""
    depth, i, start = 0, 0, True
    while i < len(text):
        c = text[i]
        if start and c in "\"'":
            end = _QUOTED_SPAN.match(text, i)
            if end is None:
                return False
            i, start = end.end(), False
            continue
        if c == "#" and (i == 0 or text[i - 1] == " "):
            break
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth < 0:
                return False
        start = c in "[{,: "
        i += 1
    return depth == 0


def _image_value(raw: str) -> str | None:
    """A service's `image:` value as the string YAML reads, when it is one plainly (no
    interpolation, anchor, alias, tag, escape or block scalar): else None."""
    value = raw.split(" #", 1)[0].rstrip()
    quoted = _QUOTED.fullmatch(value)
    if quoted:
        value = quoted[1] if quoted[1] is not None else quoted[2]
    elif _NOT_TEXT.fullmatch(value) or value[:1] in "&*!|>@`%\"'[{#?-:,":
        return None
    if "$" in value or "\\" in value:
        return None
    try:
        reference.parse(value)
    except BottleError:
        return None  # compose's answer says what is wrong with it
    return value


def literal_images(data: bytes) -> list[str]:
    """The images a compose file names outright (see `literal_services`), once each."""
    return _named(data)[0]


def literal_services(data: bytes) -> dict[str, str]:
    """The images a compose file names outright as its services' `image`, read without a
    YAML parser (importing one costs more than compose takes to start) from block-style
    text: a service with a profile, a pull policy, `extends`, a provider or a merge key
    is left out, and so is the whole file where its layout is anything this reading is
    not sure of (tabs, `include`, multi-line flow or quoted scalars, keys it cannot read).
    Each image named is one `compose up` pulls when missing: a head start only, compose's
    answer decides what is wanted. Service -> image."""
    return _read_services(data)[0]


def sure_images(data: bytes) -> list[str]:
    """Of `literal_images`, those whose failed pull already decides the run: every service
    is read, none takes keys from elsewhere (`extends`, a merge key), and the image is not
    one a service builds (`build` with that `image`; a service that builds without naming
    its image builds one compose names, never one it pulls). Each is then wanted and not
    built, whatever compose answers. (What is left is compose refusing the file for
    something else; then the failed pull is reported rather than compose's complaint.)"""
    return _named(data)[1]


def _named(data: bytes) -> tuple[list[str], list[str]]:
    """`literal_images` and `sure_images`, from one reading of the file."""
    found, built = _read_services(data)
    images = list(dict.fromkeys(found.values()))
    return images, [] if built is None else [image for image in images if image not in built]


# A service key that takes a service's keys from elsewhere (a build, an image, ...).
_ELSEWHERE = frozenset(("extends", "<<"))


def _read_services(data: bytes) -> tuple[dict[str, str], set[str] | None]:
    """`literal_services`, and the images services with `build` name (None when a
    service is not read, takes keys from elsewhere, or builds an image not read)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return {}, None
    if "\t" in text or "\r" in text or text.startswith("\ufeff"):
        return {}, None
    found: dict[str, str] = {}  # service -> image
    services: set[str] = set()
    in_services = seen_services = False
    svc_indent = key_indent = -1
    service: str | None = None  # the service whose keys are being read (None: skip it)
    image: str | None = None
    unsure = named = False
    plain = True  # every service read, none from elsewhere, every image built read
    built: set[str] = set()
    builds = False  # the service has `build`
    last_indent = -1  # of the line before, while it was an `image` line

    def close() -> None:
        nonlocal plain
        if service is None:
            return
        if builds and named:
            if image is None:
                plain = False  # it builds an image under a name not read here
            else:
                built.add(image)
        if image is not None and not unsure:
            found[service] = image

    for line in text.split("\n"):
        body = line.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(body)
        if last_indent >= 0 and indent > last_indent:
            image = None  # the value goes on: a multi-line scalar
        last_indent = -1
        if line.startswith(("---", "...", "%")):
            return {}, None
        if not _ends_here(body):
            return {}, None  # a flow collection or quoted scalar may go on: layout unknown
        key = _KEY_LINE.fullmatch(line)
        value = key[3] if key and key[3] and not key[3].startswith("#") else None
        if value and value[0] not in "\"'[{|>" and (
                ": " in value.split(" #", 1)[0] or value.split(" #", 1)[0].endswith(":")):
            return {}, None  # a plain scalar cannot hold `: `: YAML refuses the file
        if indent == 0:
            close()
            service = None
            if key is None or key[2] == "include":
                return {}, None
            in_services = key[2] == "services"
            if in_services:
                if seen_services or value is not None:
                    return {}, None
                seen_services = True
            continue
        if not in_services:
            continue
        if svc_indent < 0:
            svc_indent = indent
        if indent < svc_indent or (svc_indent < indent and service is not None
                                   and key_indent >= 0 and indent < key_indent):
            return {}, None
        if indent == svc_indent:
            close()
            if key is None or key[2] in services:
                return {}, None
            services.add(key[2])
            service = key[2] if value is None else None  # flow, alias or null: not read
            plain = plain and service is not None
            image, unsure, named, builds, key_indent = None, False, False, False, -1
            continue
        if service is None:
            continue
        if key_indent < 0:
            key_indent = indent
        if indent > key_indent:
            continue
        if key is None:
            return {}, None
        if key[2] == "image":
            if named:
                return {}, None  # twice: compose refuses the file
            image, named, last_indent = _image_value(value or ""), True, indent
        elif key[2] in _SERVICE_UNSURE:
            unsure = True
        if key[2] in _ELSEWHERE:
            plain = False
        builds = builds or key[2] == "build"
    close()
    return found, built if plain else None


def _head_start(pool: pulling.Pool, compose_file: Path) -> None:
    """Check (and pull when missing) the images `compose_file` names outright, in `pool`,
    over the engine's API, while compose is found and renders. Those whose failed pull
    decides the run (`sure_images`) are added as wanted."""
    if _http.from_env() is None:
        return
    try:
        data = compose_file.read_bytes()
    except OSError:
        return
    images, sure = _named(data)
    for image in images:
        if not cli_pulls(image):
            pool.add(_item(Wanted(image, (), False)), wanted=image in sure)


def _stop_at_failure(pool: pulling.Pool, compose_proc: subprocess.Popen[bytes]) -> None:
    """Once an image the file makes wanted has failed, compose's answer would not change
    the outcome: compose is stopped then (or now)."""
    pool.when_failed(functools.partial(_proc.kill, compose_proc))


class _Asking:
    """Around a question to compose while `pool` (when not None) pulls what the file names
    outright: if the question fails after an image the file makes wanted has failed (so
    `_stop_at_failure` stopped compose), that failure is the run's; and compose is not
    stopped once the question is over."""

    def __init__(self, pool: pulling.Pool | None) -> None:
        self.pool = pool

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 _tb: object) -> None:
        if self.pool is None:
            return
        failed = self.pool.failure() if isinstance(err, BottleError) else None
        self.pool.when_failed(None)
        if failed is not None:
            raise failed from None


def _single_file(found: compose.Inputs | None, files: Sequence[Path],
                 environ: Mapping[str, str]) -> Path | None:
    """The one compose file that v1 and v2 both load, or None (several, or more than one
    default file here, which they may pick differently)."""
    if found is None or len(found.compose_files) != 1:
        return None
    only = found.compose_files[0]
    if not files and not environ.get("COMPOSE_FILE") and sum(
            (only.parent / n).is_file() for n in compose.DEFAULT_FILES) != 1:
        return None
    return only


def resolve(
    *,
    images: Sequence[str] = (),
    files: Sequence[Path] = (),
    project_dir: Path | None = None,
    profiles: Sequence[str] = (),
    cache_dir: Path | None = None,
    seen: Inputs | None = None,
    pool: pulling.Pool | None = None,
) -> list[Wanted]:
    """An explicit image list as is (checked, deduplicated), else what compose renders.
    With `cache_dir`, compose's answer is kept under a key of all its inputs and reused.
    `seen`, when given, gets those inputs when every one of them is known. `pool`, when
    given, checks and pulls the images the compose file names outright while compose
    renders (`literal_images`)."""
    if images:
        if seen is not None:
            seen.known = True
        return [Wanted(_checked(i, ()), (), False) for i in dict.fromkeys(images)]
    cwd, environ = Path.cwd(), dict(os.environ)
    found = compose.inputs(files, project_dir, cwd, environ) if cache_dir else None
    only = _single_file(found, files, environ) if pool is not None else None
    stop = None
    if pool is not None and only is not None:
        _head_start(pool, only)  # from now on; finding compose may take a while the first time
        stop = functools.partial(_stop_at_failure, pool)
    with _Asking(pool):
        which = compose.find(cache_dir, meanwhile=stop)
    named: set[str] = set()
    key = (resolution_key(which, files, project_dir, profiles, cwd, environ, found, named)
           if found is not None else None)
    if key is not None and found is not None and seen is not None:
        seen.known = True
        seen.read = [str(p) for p in (*found.compose_files, *found.watched)]
        seen.stat = compose.looked_at(which)
        seen.env = named
    record = cache_dir / f"{key}.json" if cache_dir and key else None
    if record is not None and (hit := _load(record)) is not None:
        return hit
    if pool is not None and (failed := pool.failure()) is not None:
        raise failed  # the file made it the run's failure: compose need not be asked
    with _Asking(pool):
        model = compose.render(which, files=files, project_dir=project_dir, profiles=profiles,
                               cwd=cwd, meanwhile=stop)
    active = None if which.v2 else compose.v1_profiles(files, project_dir, profiles, cwd,
                                                       environ)
    wanted = images_from_model(model, active_profiles=active)
    if record is not None:
        with contextlib.suppress(OSError):  # a full or read-only cache: compose again
            write_atomic(record, json.dumps([asdict(w) for w in wanted]).encode())
    return wanted


# --- pulling -------------------------------------------------------------------------------


def _reason(err: docker.DockerError) -> str:
    reason = err.reason.removeprefix("Error response from daemon: ")
    return reason or f"docker pull exited {err.returncode}"


def _tagged_at(image: str) -> datetime | None:
    """When the engine last tagged `image` (compose's age for a refresh policy)."""
    from datetime import UTC, datetime  # here: only refresh policies need it

    info = docker.engine_image(image)
    if info is None:
        return None
    stamp = str((info.get("Metadata") or {}).get("LastTagTime") or "")
    m = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if m is None:
        return datetime.min.replace(tzinfo=UTC)
    frac = (m[2] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(f"{m[1]}.{frac}{zone}")


def _up_to_date(want: Wanted) -> bool:
    """Whether the deploy would leave this image alone (checks the local store only)."""
    if want.policy == ALWAYS:
        return False
    if want.policy.startswith("refresh:"):
        from datetime import UTC, datetime

        tagged = _tagged_at(want.image)
        age = int(want.policy.split(":")[1])
        return tagged is not None and (datetime.now(UTC) - tagged).total_seconds() < age
    return docker.engine_has_image(want.image)  # no registry traffic


def _pull(image: str) -> None:
    """Over the engine's API, as compose pulls; by `docker pull` where docker's config may
    hold credentials for the registry or asks for content trust (the CLI alone does
    those), or where the engine is not plain HTTP. A refused pull raises
    `pulling.PullError` (the API) or `docker.DockerError` (the CLI, or no engine)."""
    endpoint = _http.from_env()
    if endpoint is not None and not cli_pulls(image):
        try:
            pulling.api_pull(endpoint, *pull_target(image))
        except OSError as err:
            raise docker.unreachable(["docker", "pull", image], err) from None
        return
    with pulling.underway() as hold:  # cut short with the API's pulls
        docker.pull(image, meanwhile=hold)


def cli_pulls(image: str) -> bool:
    """Whether only the docker CLI can pull `image` (credentials in docker's config, or
    content trust)."""
    return _cli_pulls(reference.parse(image).domain, os.environ.get("DOCKER_CONTENT_TRUST", ""))


def docker_config() -> Path:
    """The docker config file `_cli_pulls` reads."""
    return docker.config_dir() / "config.json"


def _cli_pulls(domain: str, trust: str) -> bool:
    if trust not in ("", "0", "false"):
        return True
    data = docker.config_json()
    if data is docker.ABSENT:
        return False
    if not isinstance(data, dict):
        return True  # unreadable: the CLI says what it makes of it
    if data.get("credsStore"):
        return True  # a store answers for every registry
    hosts = {_host(k) for k in (*(data.get("credHelpers") or {}), *(data.get("auths") or {}))}
    if domain == reference.DEFAULT_DOMAIN:
        return bool(hosts & {"docker.io", "index.docker.io", "registry-1.docker.io"})
    return domain in hosts


def _host(key: str) -> str:
    """The registry in a docker config key (`https://index.docker.io/v1/`, `ghcr.io`)."""
    return key.split("://", 1)[-1].split("/", 1)[0]


def _pull_or_reason(image: str) -> None:
    try:
        _pull(image)
    except docker.DockerError as err:
        raise pulling.PullError(_reason(err)) from None


def _item(want: Wanted) -> pulling.Item:
    return pulling.Item(want.image, want.buildable, functools.partial(_up_to_date, want),
                        functools.partial(_pull_or_reason, want.image))


def prepull(wanted: Sequence[Wanted], *, jobs: int = 4,
            pool: pulling.Pool | None = None) -> list[Outcome]:
    """Check and pull in parallel (bottle.pulling.run), in `pool` when given (where the
    images the compose file names outright may be under way). Raises `PrepullFailed`
    carrying all outcomes."""
    if pool is not None and any(w.policy != MISSING for w in wanted
                                if w.image in pool.added()):
        pool.cancel()  # checked as `missing`: not how compose pulls these (never so far)
        pool.join()
        pool = None
    return pulling.run([_item(w) for w in wanted], jobs=jobs, pool=pool)


def pull_target(image: str) -> tuple[str, str]:
    """(name, tag or digest) as the engine's pull takes them: a tag always (`latest`
    where none is given), since without one the engine pulls every tag."""
    ref = reference.parse(image)
    return ref.name, ref.digest or ref.tag or "latest"
