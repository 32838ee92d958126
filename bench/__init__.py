"""Benchmarks: eoflow against Kafka Streams, faust-streaming, Quix Streams and two raw aiokafka
ceilings (a naive loop and a batched pipeline)."""
