"""Tests for consul-tw."""
