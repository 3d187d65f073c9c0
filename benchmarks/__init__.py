"""Benchmarks that measure mmkit against plain baselines (see ``RESULTS-*.md``)."""
