"""Benchmarks: figures, not tests (`lionloop bench ...`); each writes its section of BENCHMARKS.md."""
