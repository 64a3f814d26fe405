"""Tests for the server-RPC transport."""
