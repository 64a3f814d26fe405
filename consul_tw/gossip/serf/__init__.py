"""
The Serf layer over memberlist: member status, Lamport clocks, intents,
tags, events and queries (``pool.py`` holds a pool's member table).
"""

from consul_tw.gossip.serf.pool import EventType, MemberEvent, Membership

__all__ = ["EventType", "MemberEvent", "Membership"]
