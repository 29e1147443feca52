"""pytest fixtures for testing one's own instrumented jobs locally (entry point ``pytest11``)."""
