# -*- test-case-name: tests.unit.dns -*-
"""
The Consul DNS interface: :class:`ConsulAuthority` decides the answers from
the catalog, :class:`DNSService` carries them over UDP and TCP.
"""

from consul_tw.dns.authority import ConsulAuthority
from consul_tw.dns.server import DNSService

__all__ = ["ConsulAuthority", "DNSService"]
