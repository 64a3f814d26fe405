"""dns package."""
