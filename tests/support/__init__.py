"""Helpers shared by test suites: real processes on loopback (see `procs`)."""
