"""The process toolbox of `localmesh/`, `bench/` and `tests/`: starting and stopping
process groups that die with their parent (`procs`), loopback ports (`ports`), waiting
until something is ready (`ready`), reading Prometheus text (`prom`), and a throw-away
PostgreSQL server from Debian's packages (`postgres`)."""
