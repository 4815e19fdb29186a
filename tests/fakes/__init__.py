"""Fakes that speak real protocols (local HTTP servers), for tests."""
