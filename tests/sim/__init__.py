"""Cluster simulations on one clock (gossip, and later raft and whole agents)."""
