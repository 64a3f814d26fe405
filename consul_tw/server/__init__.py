"""Server-only actors: leader duties and the server RPC listener."""
