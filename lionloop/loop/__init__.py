"""The loop: the LangGraph graph, its state, its nodes and the work of each stage, the runtime
that carries the run's heavy objects, and starting and resuming runs."""
