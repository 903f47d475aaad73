"""Entry point for gunicorn: ``gunicorn wsgi:app``."""

from quantpulse import create_app

app = create_app()
