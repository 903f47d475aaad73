"""Shared infrastructure: the key-value store, its key namespace and the fleet's counters.

The cache, the upstream guard and the operations views all use these; none of them owns them.
"""
