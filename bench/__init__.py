"""Benchmarks and the soak run: loopback-only load against the mock, the gateway and nginx."""
