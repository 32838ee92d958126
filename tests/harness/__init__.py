"""Reusable exactly-once verification harness: driver, test app, workers, oracle, scenarios.

See ``scenarios.py`` for the named fault scenarios and ``soak.py`` for the long run.
"""
