"""Benchmark harness (installed as kd_edge.benchmarks): latency and memory here, over ssh, on phones."""
