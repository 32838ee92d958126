"""Benchmarks: eoflow against faust-streaming, Quix Streams and a raw aiokafka loop."""
