"""Benchmarks and the fault suite: ratios against baselines measured in the same run (issue #6)."""
