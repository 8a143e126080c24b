"""The process toolbox of `localmesh/`, `bench/` and `tests/`: starting and stopping
process groups that die with their parent (`procs`), loopback ports (`ports`), waiting
until something is ready (`ready`), and reading Prometheus text (`prom`)."""
