"""tlsweep trainables."""
