"""The deployment files agree with ``.env.example``: compose passes every variable, blanks are unset.

``make compose-check`` proves docker-compose.yml is valid; these prove it is complete, and that
the blanks compose passes for unset variables give gunicorn its defaults.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN_VARIABLES = ("PORT", "WEB_CONCURRENCY", "GUNICORN_CONNECTIONS", "GUNICORN_TIMEOUT", "LOG_LEVEL")


def documented_variables() -> set[str]:
    """Every ``NAME=`` line of .env.example (commented examples excluded)."""
    text = (REPO_ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def compose_environment() -> dict[str, str]:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return compose["services"]["app"]["environment"]


def test_compose_passes_every_documented_variable_from_the_shell_or_dotenv():
    environment = compose_environment()
    fixed = {"REDIS_URL": "redis://redis:6379/0", "PORT": "8000"}  # compose's own Redis and port

    assert documented_variables() - set(environment) == set()
    for name, value in environment.items():
        assert value == fixed.get(name) or re.fullmatch(rf"\$\{{{name}:-[^}}]*\}}", value), name


def test_compose_lists_the_default_api_tiers():
    assert {"API_TIER_FREE", "API_TIER_PRO"} <= set(compose_environment())


def test_gunicorn_takes_its_defaults_for_blank_variables(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in GUNICORN_VARIABLES:
        monkeypatch.setenv(name, "")

    config = runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))

    assert (config["bind"], config["workers"], config["worker_connections"]) == ("0.0.0.0:8000", 2, 1000)
    assert config["worker_class"] == "gevent"
    assert (config["timeout"], config["loglevel"]) == (30, "info")
