"""The fleet-wide cache: entries and keys, the get-or-fetch engine, fill locks and wake-ups."""
