"""The benchmarks, run from the repository root as modules: ``python -m bench.bench_memory --help``.
Shared parts (machine, results files, full-size models with random weights) are in :mod:`bench.common`."""
