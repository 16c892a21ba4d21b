"""tlsweep orchestrator."""
