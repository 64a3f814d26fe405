"""Agent-local state: what this agent owns in the catalog, and its sync."""
