"""Fakes shipped for tests of consul-tw and of code built on it (as treq.testing)."""
