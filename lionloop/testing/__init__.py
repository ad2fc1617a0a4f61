"""Helpers for tests and benchmarks (real servers, tiny models)."""
