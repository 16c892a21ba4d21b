"""tlsweep cluster."""
