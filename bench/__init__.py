"""Benchmarks: the diff proxy next to nginx on loopback. Run with `python -m bench`."""
