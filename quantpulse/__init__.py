"""QuantPulse: a market-data backend for NSE/BSE equities with a fleet-wide cache.

The app factory is ``quantpulse.app.create_app``; the composition root ``quantpulse.bootstrap``.
Importing this package imports nothing else, so ``quantpulse.logs`` (which gunicorn's master
loads for its log format) or ``quantpulse.config`` come without Flask and the whole stack.
"""
