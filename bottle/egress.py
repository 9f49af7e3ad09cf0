"""Egress policy: the allow-list, the squid config made from it, and its log read back.

Pure functions only (no docker, no files): `bottle.egress_net` runs the proxy.

Allow-list entries are host names: `api.example.com` (that host only), `*.example.org`
(every subdomain of example.org, not example.org itself), each optionally with `:PORT`.
Without a port an entry allows ports 80 and 443; with one, that port only. The same
rule holds for plain HTTP requests and HTTPS `CONNECT` tunnels: squid matches the host
the client asked for, before any DNS lookup. `observe` lets everything through (except
the proxy's own loopback and link-local addresses such as cloud metadata) and records
every destination, so a session's real needs can become its allow-list.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from bottle.errors import BottleError
from cache.record import dataclass

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROXY_PORT = 3128
DEFAULT_PORTS = (80, 443)
OBSERVE = "observe"
LOG_FORMAT = "%ts.%03tu %Ss %>Hs %rm %>rd %>rP %err_code"
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SUMMARY_HOSTS = 10


class EgressError(BottleError):
    """An allow-list entry or egress setting that cannot be used."""


@dataclass(frozen=True)
class Rule:
    """One allow-list entry: `host` (lower case, without `*.`), subdomains or not, port."""

    host: str
    wildcard: bool = False
    port: int | None = None

    @property
    def ports(self) -> tuple[int, ...]:
        return DEFAULT_PORTS if self.port is None else (self.port,)

    def matches(self, host: str, port: int) -> bool:
        host = host.lower()
        name_ok = host.endswith("." + self.host) if self.wildcard else host == self.host
        return name_ok and port in self.ports

    def __str__(self) -> str:
        name = f"*.{self.host}" if self.wildcard else self.host
        return name if self.port is None else f"{name}:{self.port}"


@dataclass(frozen=True)
class Policy:
    """What the proxy lets through: the rules, or everything (observe mode)."""

    rules: tuple[Rule, ...] = ()
    observe: bool = False

    def allows(self, host: str, port: int) -> bool:
        return self.observe or any(r.matches(host, port) for r in self.rules)


# --- parsing the allow-list ---------------------------------------------------------------


def _bad(entry: str, why: str) -> EgressError:
    return EgressError(f"egress entry {entry!r}: {why}")


def _split_port(entry: str, text: str) -> tuple[str, int | None]:
    if text.count(":") > 1:
        raise _bad(entry, "an IPv6 address; the allow-list takes host names")
    host, sep, port = text.partition(":")
    if not sep:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(entry, f"port {port!r} is not a number from 1 to 65535")
    return host, int(port)


def _check_host(entry: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise _bad(entry, "an IP address; the allow-list takes host names")
    if not host:
        raise _bad(entry, "no host name")
    if len(host) > 253:
        raise _bad(entry, "a host name longer than 253 characters")
    for label in host.split("."):
        if not _LABEL.match(label):
            raise _bad(entry, f"{label!r} is not a valid DNS label (letters, digits, inner '-')")


def parse_rule(entry: object) -> Rule:
    """One entry (`host`, `*.domain`, either with `:port`), or EgressError naming it."""
    if not isinstance(entry, str):
        raise EgressError(f"egress entry {entry!r}: expected a host name string")
    text = entry.strip().lower()
    if "://" in text or "/" in text:
        raise _bad(entry, "write the host name only, without a scheme or path")
    if text == OBSERVE:
        raise _bad(entry, 'observe is a mode, not an entry: write egress = "observe"')
    host, port = _split_port(entry, text)
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if host == "*" or (wildcard and not host):
        raise _bad(entry, 'allows everything; use egress = "observe" to record all traffic')
    if "*" in host:
        raise _bad(entry, "'*' is allowed only as a leading '*.'")
    _check_host(entry, host)
    return Rule(host, wildcard, port)


def parse_allow_list(entries: Iterable[object]) -> tuple[Rule, ...]:
    """The rules in order, duplicates dropped."""
    if isinstance(entries, str | bytes):
        raise EgressError(f"egress: expected a list of host names or \"observe\", got {entries!r}")
    rules: dict[Rule, None] = {}
    for e in entries:
        rules.setdefault(parse_rule(e), None)
    return tuple(rules)


def parse_policy(value: str | Sequence[object]) -> Policy:
    """`"observe"`, or a list of allow-list entries."""
    if isinstance(value, str):
        if value.strip().lower() != OBSERVE:
            raise EgressError(
                f"egress: {value!r} is neither \"observe\" nor a list of host names")
        return Policy(observe=True)
    return Policy(parse_allow_list(value))


# --- the proxy's config and the agent's environment -------------------------------------


def _rule_acls(i: int, rule: Rule) -> list[str]:
    if rule.wildcard:
        # Only validated labels reach here: escaping the dots is all a regex needs.
        pattern = "\\." + rule.host.replace(".", "\\.") + "$"
        host_acl = f"acl bottle_host_{i} dstdom_regex -n -i {pattern}"
    else:
        host_acl = f"acl bottle_host_{i} dstdomain -n {rule.host}"
    return [
        f"# {rule}",
        host_acl,
        f"acl bottle_port_{i} port {' '.join(str(p) for p in rule.ports)}",
        f"http_access allow bottle_host_{i} bottle_port_{i} !to_localhost !bottle_link_local",
    ]


def render_squid_conf(policy: Policy, *, port: int = PROXY_PORT) -> str:
    """A complete squid.conf: listen on `port`, allow what `policy` allows, deny the rest,
    log one line per request to stdout in `LOG_FORMAT`, cache nothing."""
    lines = [
        "# Generated by bot-bottle from the egress allow-list; edits are overwritten.",
        f"http_port {port}",
        "pid_filename none",
        "cache deny all",
        "max_filedescriptors 4096",
        "shutdown_lifetime 1 seconds",
        "pinger_enable off",
        "visible_hostname bot-bottle-proxy",
        "httpd_suppress_version_string on",
        "forwarded_for delete",
        f"logformat bottle {LOG_FORMAT}",
        "access_log stdio:/dev/stdout bottle",
        "cache_log stdio:/dev/stderr",
        "logfile_rotate 0",
        # Cloud metadata and other link-local services are never a destination.
        "acl bottle_link_local dst 169.254.0.0/16 fe80::/10",
        "http_access deny manager",
    ]
    if policy.observe:
        lines += ["http_access deny to_localhost", "http_access deny bottle_link_local",
                  "http_access allow all"]
    else:
        for i, rule in enumerate(policy.rules):
            lines += _rule_acls(i, rule)
    lines.append("http_access deny all")
    return "\n".join(lines) + "\n"


def proxy_env(host: str, port: int = PROXY_PORT, *,
              no_proxy: Sequence[str] = ()) -> dict[str, str]:
    """HTTP(S)_PROXY and NO_PROXY, upper and lower case (tools read one or the other)."""
    url = f"http://{host}:{port}"
    skip = ",".join(dict.fromkeys(["localhost", "127.0.0.1", "::1", *no_proxy]))
    env: dict[str, str] = {}
    for name, value in (("HTTP_PROXY", url), ("HTTPS_PROXY", url), ("NO_PROXY", skip)):
        env[name] = env[name.lower()] = value
    return env


# --- the proxy's log ---------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One line of the proxy's access log."""

    time: float
    status: str  # squid's request status, e.g. TCP_MISS, TCP_TUNNEL, TCP_DENIED
    code: int  # HTTP status sent to the client (0: none, e.g. the client went away)
    method: str
    host: str
    port: int | None
    error: str | None  # squid's err_code, e.g. ERR_ACCESS_DENIED, ERR_DNS_FAIL

    @property
    def denied(self) -> bool:
        return "DENIED" in self.status or self.error == "ERR_ACCESS_DENIED"

    @property
    def destination(self) -> str:
        """The host, with its port when that is not 80 or 443."""
        if self.port is None or self.port in DEFAULT_PORTS:
            return self.host
        return f"{self.host}:{self.port}"


def _parse_line(line: str) -> Request | None:
    fields = line.split()
    if len(fields) != 7:
        return None
    ts, status, code, method, host, port, error = fields
    try:
        return Request(
            time=float(ts), status=status, code=int(code), method=method,
            host=host.lower(), port=int(port) if port.isdigit() else None,
            error=None if error == "-" else error,
        )
    except ValueError:
        return None


def parse_log(text: str) -> list[Request]:
    """Every access-log line in `text`; anything else (squid's own messages) is skipped."""
    return [r for r in map(_parse_line, text.splitlines()) if r is not None]


@dataclass(frozen=True)
class Summary:
    allowed: int
    denied: int
    allowed_hosts: Mapping[str, int]  # destination -> requests, most requested first
    denied_hosts: Mapping[str, int]


def _ranked(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def summarize(requests: Iterable[Request]) -> Summary:
    allowed: Counter[str] = Counter()
    denied: Counter[str] = Counter()
    for r in requests:
        (denied if r.denied else allowed)[r.destination] += 1
    return Summary(sum(allowed.values()), sum(denied.values()), _ranked(allowed), _ranked(denied))


def _hosts(counts: Mapping[str, int]) -> str:
    shown = [h if n == 1 else f"{h} x{n}" for h, n in list(counts.items())[:_SUMMARY_HOSTS]]
    more = len(counts) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def summary_line(summary: Summary, *, observe: bool = False) -> str:
    """`egress: 41 allowed, 3 denied: evil.test x2, example.com` (observe: what was reached)."""
    if observe:
        n = len(summary.allowed_hosts)
        line = f"egress (observe): {summary.allowed} requests to {n} destination" + (
            "" if n == 1 else "s")
        return line + (f": {_hosts(summary.allowed_hosts)}" if n else "")
    line = f"egress: {summary.allowed} allowed, {summary.denied} denied"
    return line + (f": {_hosts(summary.denied_hosts)}" if summary.denied else "")


def summary_json(summary: Summary, requests: Sequence[Request] = (), *,
                 observe: bool = False) -> dict[str, Any]:
    """The summary (and each request, when given) as plain JSON data for `--json`."""
    return {
        "mode": OBSERVE if observe else "allow-list",
        "allowed": summary.allowed,
        "denied": summary.denied,
        "allowed_hosts": dict(summary.allowed_hosts),
        "denied_hosts": dict(summary.denied_hosts),
        "requests": [
            {"time": r.time, "method": r.method, "host": r.host, "port": r.port,
             "status": r.status, "code": r.code, "error": r.error, "denied": r.denied}
            for r in requests
        ],
    }


def observed_allow_list(requests: Iterable[Request]) -> list[str]:
    """The distinct destinations reached (allowed requests to a named host), sorted:
    a candidate allow-list for review. Every entry parses with `parse_rule`."""
    found = set()
    for r in requests:
        if r.denied or r.host == "-":
            continue
        try:
            found.add(str(parse_rule(r.destination)))
        except EgressError:
            continue  # an IP literal or junk a client sent: not a host name to allow
    return sorted(found)
