"""The teacher: typed requests, the cached client, and the base of chat (LLM) backends."""
