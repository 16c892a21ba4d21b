"""tlsweep search_spaces."""
