"""QuantPulse: a market-data backend for NSE/BSE equities with a fleet-wide cache.

``create_app`` (``quantpulse/app.py``) is the app factory; ``bootstrap.py`` the composition root.
"""

from quantpulse.app import create_app

__all__ = ["create_app"]
