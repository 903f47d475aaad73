"""Who a request comes from: client API keys (``keys.py``), kept in the shared store."""
