"""The student: the tiny offline model, loading, batched generation, and its prompt format."""
