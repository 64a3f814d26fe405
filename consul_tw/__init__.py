"""
consul-tw: a HashiCorp-Consul-compatible service-discovery agent on Twisted.

The version below is what the banner's ``Version:`` line, the ``build`` gossip
tag and ``/v1/agent/self`` report.
"""

__version__ = "0.1.0"
