"""
The memberlist layer: SWIM membership, failure detection, dissemination and
push/pull, wire-compatible with hashicorp/memberlist 0.2.x (Serf 0.9, Consul 1.8).
"""
