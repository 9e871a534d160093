"""Lab helpers shared by `make demo`, the benchmarks and the tests: private services, namespaces."""
