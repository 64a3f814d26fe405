"""
The twistd dropin: ``twistd -n consul-agent --dev``.

Only the plugin declaration lives here; options and the service tree are in
:mod:`consul_tw.tap`, so importing the plugin cache stays cheap.
"""

from twisted.application.service import ServiceMaker

consulAgent = ServiceMaker(
    "consul-tw agent",
    "consul_tw.tap",
    "A Consul-compatible agent (server or client) on Twisted.",
    "consul-agent",
)
