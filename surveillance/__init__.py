"""Manipulation detection over orders and trades (Bytewax), flags and the review workflow."""
