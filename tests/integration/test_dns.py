"""
The DNS interface of a real dev agent, over UDP and TCP with dnspython, and
through ``dig`` as the tutorial does it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.integration.harness import assert_no_traceback

pytestmark = pytest.mark.integration

NODE = "dns-node"
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def agent(module_agents):
    return module_agents.start(NODE)


def ask(agent, name: str, rdtype: str = "A", transport: str = "udp") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.udp if transport == "udp" else dns.query.tcp
    return send(query, "127.0.0.1", port=agent.ports.dns, timeout=TIMEOUT)


def assert_consul_flags(response: dns.message.Message) -> None:
    """``flags: qr aa rd``: authoritative, recursion desired echoed, not available."""
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.AA
    assert response.flags & dns.flags.RD
    assert not response.flags & dns.flags.RA
    assert not response.flags & dns.flags.TC


TRANSPORTS = ["udp", "tcp"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", [f"{NODE}.node.consul.", f"{NODE}.node.dc1.consul."])
def test_node_lookup(agent, name, transport):
    response = ask(agent, name, "A", transport)
    assert response.rcode() == dns.rcode.NOERROR
    assert_consul_flags(response)
    (answer,) = response.answer
    assert answer.name.to_text() == name
    assert answer.rdtype == dns.rdatatype.A
    assert answer.ttl == 0
    assert [r.address for r in answer] == ["127.0.0.1"]
    txt = [rrset for rrset in response.additional if rrset.rdtype == dns.rdatatype.TXT]
    assert len(txt) == 1
    assert txt[0].name.to_text() == name
    assert txt[0].ttl == 0
    assert [b"".join(r.strings) for r in txt[0]] == [b"consul-network-segment="]
    assert response.authority == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_node_is_nxdomain_with_soa(agent, transport):
    response = ask(agent, "no-such-node.node.consul.", "A", transport)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert_consul_flags(response)
    assert response.answer == []
    (soa_set,) = response.authority
    assert soa_set.name.to_text() == "consul."
    assert soa_set.rdtype == dns.rdatatype.SOA
    assert soa_set.ttl == 0
    (soa,) = soa_set
    assert soa.mname.to_text() == "ns.consul."
    assert soa.rname.to_text() == "hostmaster.consul."
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (3600, 600, 86400, 0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_consul_service_srv(agent, transport):
    response = ask(agent, "consul.service.consul.", "SRV", transport)
    assert response.rcode() == dns.rcode.NOERROR
    assert_consul_flags(response)
    (answer,) = response.answer
    assert answer.rdtype == dns.rdatatype.SRV
    assert answer.ttl == 0
    (srv,) = answer
    assert (srv.priority, srv.weight, srv.port) == (1, 1, agent.ports.server)
    target = f"{NODE}.node.dc1.consul."
    assert srv.target.to_text() == target
    glue = [r for r in response.additional if r.rdtype == dns.rdatatype.A]
    assert len(glue) == 1
    assert glue[0].name.to_text() == target
    assert [r.address for r in glue[0]] == ["127.0.0.1"]


def test_consul_service_a(agent):
    response = ask(agent, "consul.service.consul.", "A")
    assert response.rcode() == dns.rcode.NOERROR
    (answer,) = response.answer
    assert [r.address for r in answer] == ["127.0.0.1"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_name_outside_consul_domain_is_refused(agent, transport):
    response = ask(agent, "www.example.com.", "A", transport)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.flags & dns.flags.QR
    assert not response.flags & dns.flags.RA
    assert response.answer == []


def test_garbage_over_udp_does_not_kill_the_agent(agent):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for payload in (b"", b"\x01", b"\x00garbage\xff" * 3, bytes(range(256)), b"\xff" * 600):
            sock.sendto(payload, ("127.0.0.1", agent.ports.dns))
    response = ask(agent, f"{NODE}.node.consul.", "A", "udp")
    assert response.rcode() == dns.rcode.NOERROR
    assert agent.running
    assert_no_traceback(agent.stdout(), agent.stderr())


def test_garbage_over_tcp_does_not_kill_the_agent(agent):
    payloads = [
        b"\x00\x05hello",  # framed, not a DNS message
        b"\x00\x0c" + b"\xff" * 12,  # framed header-sized junk
        b"\xff\xff" + b"junk" * 10,  # length prefix far beyond what follows
        b"GET / HTTP/1.1\r\n\r\n",  # the wrong protocol entirely
        b"\x00",  # half a length prefix
    ]
    for payload in payloads:
        with socket.create_connection(("127.0.0.1", agent.ports.dns), timeout=TIMEOUT) as conn:
            conn.sendall(payload)
    response = ask(agent, f"{NODE}.node.consul.", "A", "tcp")
    assert response.rcode() == dns.rcode.NOERROR
    response = ask(agent, f"{NODE}.node.consul.", "A", "udp")
    assert response.rcode() == dns.rcode.NOERROR
    assert agent.running
    assert_no_traceback(agent.stdout(), agent.stderr())


def test_dig_node_lookup(agent):
    dig = shutil.which("dig")
    if dig is None:
        pytest.skip("dig is not installed (needs the dnsutils / bind-utils package)")
    result = subprocess.run(
        [
            dig,
            "@127.0.0.1",
            "-p",
            str(agent.ports.dns),
            f"{NODE}.node.consul",
            "+time=5",
            "+tries=1",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "status: NOERROR" in out
    assert "flags: qr aa rd;" in out
    assert "WARNING: recursion requested but not available" in out
    assert re.search(
        rf"^{re.escape(NODE)}\.node\.consul\.\s+0\s+IN\s+A\s+127\.0\.0\.1$", out, re.M
    ), out
    assert re.search(
        rf'^{re.escape(NODE)}\.node\.consul\.\s+0\s+IN\s+TXT\s+"consul-network-segment="$',
        out,
        re.M,
    ), out


def test_queries_are_logged_and_no_traceback(agent):
    agent.wait_for_output(
        f"agent.dns: request served from client: name={NODE}.node.consul. type=A class=IN",
        timeout=10,
    )
    assert_no_traceback(agent.stdout(), agent.stderr())
