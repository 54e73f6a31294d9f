"""Benchmarks. Each prints its headline figures as `bench: <name> <value> <unit>` lines."""
