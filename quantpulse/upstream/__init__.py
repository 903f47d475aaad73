"""Upstream economy: the fleet-wide credit budget, provider health, and the guard every call passes."""
