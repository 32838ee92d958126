"""One bench app per system; each reads its configuration from BENCH_* environment variables."""
