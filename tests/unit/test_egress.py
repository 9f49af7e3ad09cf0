"""The allow-list, the squid config rendered from it, and the proxy log read back."""

from __future__ import annotations

import pytest

from bottle import agents
from bottle.egress import (
    EgressError,
    Policy,
    Rule,
    observed_allow_list,
    parse_allow_list,
    parse_log,
    parse_policy,
    parse_rule,
    proxy_env,
    render_squid_conf,
    summarize,
    summary_json,
    summary_line,
)

# Lines squid 5.7 (Debian bookworm) wrote with our LOG_FORMAT, in a bottle on this machine.
REAL_LOG = """\
1795314253.574 TCP_MISS 200 GET allowed.test 80 -
1795314253.578 TCP_DENIED 403 GET denied.test 80 ERR_ACCESS_DENIED
1795314253.583 NONE_NONE 503 CONNECT allowed.test 443 ERR_CONNECT_FAIL
1795314253.588 TCP_DENIED_ABORTED 403 CONNECT denied.test 443 ERR_ACCESS_DENIED
1795314253.592 TCP_TUNNEL 200 CONNECT allowed.test 80 -
1795314253.596 TCP_DENIED_ABORTED 403 CONNECT allowed.test 22 ERR_ACCESS_DENIED
"""


@pytest.mark.parametrize(("entry", "rule"), [
    ("api.anthropic.com", Rule("api.anthropic.com")),
    ("  API.Example.ORG ", Rule("api.example.org")),
    ("*.example.org", Rule("example.org", wildcard=True)),
    ("registry.local:5000", Rule("registry.local", port=5000)),
    ("*.corp.test:8443", Rule("corp.test", wildcard=True, port=8443)),
    ("localhost", Rule("localhost")),
    ("a-b.c0", Rule("a-b.c0")),
])
def test_good_entries(entry: str, rule: Rule) -> None:
    assert parse_rule(entry) == rule
    assert parse_rule(str(rule)) == rule  # str() round-trips


@pytest.mark.parametrize(("entry", "why"), [
    ("https://api.example.com", "without a scheme or path"),
    ("example.com/path", "without a scheme or path"),
    ("10.0.0.1", "an IP address"),
    ("10.0.0.1:80", "an IP address"),
    ("::1", "an IPv6 address"),
    ("[2001:db8::1]:443", "an IPv6 address"),
    ("example.com:0", "port '0'"),
    ("example.com:65536", "port '65536'"),
    ("example.com:http", "port 'http'"),
    ("example.com:", "port ''"),
    ("*", "allows everything"),
    ("*.", "allows everything"),
    ("*:443", "allows everything"),
    ("foo.*.com", "only as a leading"),
    ("**.example.com", "only as a leading"),
    ("a..b", "'' is not a valid DNS label"),
    ("-a.com", "'-a' is not a valid DNS label"),
    ("a-.com", "'a-' is not a valid DNS label"),
    ("under_score.com", "'under_score' is not a valid DNS label"),
    ("example.com.", "'' is not a valid DNS label"),
    ("x" * 64 + ".com", "is not a valid DNS label"),
    (".".join(["a" * 63] * 4) + ".com", "longer than 253"),
    ("", "no host name"),
    (":443", "no host name"),
    ("observe", "observe is a mode"),
    ("ex ample.com", "not a valid DNS label"),
])
def test_bad_entries_get_one_line_naming_them(entry: str, why: str) -> None:
    with pytest.raises(EgressError) as err:
        parse_rule(entry)
    msg = str(err.value)
    assert why in msg and repr(entry) in msg and "\n" not in msg


def test_non_strings_and_a_bare_string_list() -> None:
    with pytest.raises(EgressError, match="expected a host name string"):
        parse_rule(443)
    with pytest.raises(EgressError, match="expected a list of host names"):
        parse_allow_list("api.example.com")
    with pytest.raises(EgressError, match="neither \"observe\" nor a list"):
        parse_policy("everything")


def test_policy_from_config_values() -> None:
    assert parse_policy("observe") == Policy(observe=True)
    assert parse_policy(" Observe ") == Policy(observe=True)
    assert parse_policy([]) == Policy()
    assert parse_policy(["a.test", "b.test:81", "a.test", "A.test"]) == Policy(
        (Rule("a.test"), Rule("b.test", port=81)))


@pytest.mark.parametrize(("host", "port", "allowed"), [
    ("allowed.test", 80, True),
    ("allowed.test", 443, True),
    ("ALLOWED.test", 443, True),
    ("allowed.test", 8080, False),
    ("sub.allowed.test", 80, False),  # an exact name is just that name
    ("api.wild.test", 443, True),
    ("a.b.wild.test", 80, True),
    ("wild.test", 443, False),  # `*.` means subdomains, not the apex
    ("notwild.test", 443, False),
    ("ported.test", 8080, True),
    ("ported.test", 80, False),
    ("evil.test", 80, False),
])
def test_rule_semantics(host: str, port: int, allowed: bool) -> None:
    policy = parse_policy(["allowed.test", "*.wild.test", "ported.test:8080"])
    assert policy.allows(host, port) is allowed
    assert Policy(observe=True).allows(host, port)


def test_squid_conf_for_an_allow_list() -> None:
    conf = render_squid_conf(parse_policy(["allowed.test", "*.wild.test", "ported.test:8080"]),
                             port=3129)
    lines = conf.splitlines()
    assert "http_port 3129" in lines
    assert "acl bottle_host_0 dstdomain -n allowed.test" in lines
    assert "acl bottle_port_0 port 80 443" in lines
    assert "acl bottle_host_1 dstdom_regex -n -i \\.wild\\.test$" in lines
    assert "acl bottle_port_2 port 8080" in lines
    allows = [ln for ln in lines if ln.startswith("http_access allow")]
    assert allows == [
        f"http_access allow bottle_host_{i} bottle_port_{i} !to_localhost !bottle_link_local"
        for i in range(3)]
    access = [ln for ln in lines if ln.startswith("http_access")]
    assert access[0] == "http_access deny manager" and access[-1] == "http_access deny all"
    assert "access_log stdio:/dev/stdout bottle" in lines
    assert "cache deny all" in lines


def test_squid_conf_observe_and_empty() -> None:
    observe = render_squid_conf(Policy(observe=True)).splitlines()
    access = [ln for ln in observe if ln.startswith("http_access")]
    assert access == ["http_access deny manager", "http_access deny to_localhost",
                      "http_access deny bottle_link_local", "http_access allow all",
                      "http_access deny all"]
    empty = render_squid_conf(Policy()).splitlines()
    assert [ln for ln in empty if ln.startswith("http_access")] == [
        "http_access deny manager", "http_access deny all"]


def test_shipped_deny_all_config_is_the_rendered_one() -> None:
    shipped = (agents.proxy_source() / "squid.conf").read_text()
    assert shipped == render_squid_conf(Policy())


def test_proxy_env_both_cases() -> None:
    env = proxy_env("bb-proxy", 3128, no_proxy=["internal.test", "localhost"])
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://bb-proxy:3128"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1,internal.test"
    assert len(env) == 6


def test_parse_real_log_lines() -> None:
    reqs = parse_log("squid says hello\n" + REAL_LOG + "\n1 2 3\nnot a line at all x y\n")
    assert len(reqs) == 6
    first = reqs[0]
    assert (first.time, first.status, first.code, first.method, first.host, first.port,
            first.error, first.denied) == (1795314253.574, "TCP_MISS", 200, "GET",
                                           "allowed.test", 80, None, False)
    assert [r.denied for r in reqs] == [False, True, False, True, False, True]
    assert reqs[5].destination == "allowed.test:22"
    assert reqs[2].destination == "allowed.test"
    assert reqs[2].error == "ERR_CONNECT_FAIL"


def test_summary_line_and_json() -> None:
    reqs = parse_log(REAL_LOG)
    s = summarize(reqs)
    assert (s.allowed, s.denied) == (3, 3)
    assert summary_line(s) == "egress: 3 allowed, 3 denied: denied.test x2, allowed.test:22"
    data = summary_json(s, reqs)
    assert data["mode"] == "allow-list"
    assert data["denied_hosts"] == {"denied.test": 2, "allowed.test:22": 1}
    assert data["allowed_hosts"] == {"allowed.test": 3}
    assert len(data["requests"]) == 6 and data["requests"][1]["denied"] is True


def test_summary_line_shapes() -> None:
    line = "{:.3f} TCP_DENIED 403 GET {} 80 ERR_ACCESS_DENIED"
    many = "\n".join(line.format(i, f"h{i:02d}.test") for i in range(12))
    s = summarize(parse_log(many + "\n" + line.format(99, "h00.test")))
    assert summary_line(s) == (
        "egress: 0 allowed, 13 denied: h00.test x2, h01.test, h02.test, h03.test, h04.test, "
        "h05.test, h06.test, h07.test, h08.test, h09.test and 2 more")
    assert summary_line(summarize([])) == "egress: 0 allowed, 0 denied"
    assert summary_line(summarize([]), observe=True) == (
        "egress (observe): 0 requests to 0 destinations")


def test_observe_summary_and_allow_list() -> None:
    log = REAL_LOG + (
        "1795314254.000 TCP_MISS 200 GET 10.1.2.3 80 -\n"
        "1795314254.001 TCP_TUNNEL 200 CONNECT api.example.com 8443 -\n"
        "1795314254.002 TCP_MISS 503 GET - - ERR_INVALID_URL\n")
    reqs = parse_log(log)
    s = summarize(reqs)
    assert summary_line(s, observe=True) == (
        "egress (observe): 6 requests to 4 destinations: allowed.test x3, -, 10.1.2.3, "
        "api.example.com:8443")
    found = observed_allow_list(reqs)
    assert found == ["allowed.test", "api.example.com:8443"]
    assert parse_allow_list(found)  # a candidate allow-list that parses as one
