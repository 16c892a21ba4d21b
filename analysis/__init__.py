"""tlsweep analysis."""
