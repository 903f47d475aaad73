"""Upstream providers behind one interface: Twelve Data, Finnhub and demo data."""
