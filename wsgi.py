"""Entry point: ``gunicorn wsgi:app`` serves the app, ``flask --app wsgi quantpulse …`` operates it.

Both read ``.env`` from the working directory first, without overriding the real environment
(python-dotenv's default, as with docker-compose and Heroku config vars): ``PORT=8766 make run``
beats a ``PORT=8000`` line in the file. Only entry points read the file, never ``Settings``, so
a developer's ``.env`` cannot leak into tests that build the app themselves.
"""

from dotenv import load_dotenv

from quantpulse.app import create_app

load_dotenv(".env", override=False)
app = create_app()
