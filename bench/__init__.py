"""Benchmarks, one script each; run them as ``python bench/<name>.py`` (see bench/README.md)."""
