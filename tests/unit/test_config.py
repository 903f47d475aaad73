"""Settings are read once from the environment, with docs/api.md's names and precedence."""

from __future__ import annotations

import pytest

from quantpulse.config import DEFAULT_ALLOWED_ORIGINS, Settings
from quantpulse.errors import ConfigurationError


def test_defaults_need_no_environment():
    settings = Settings.from_env({})

    assert settings.stock_provider == "auto"
    assert (settings.quote_ttl, settings.historical_ttl, settings.profile_ttl) == (60, 300, 86400)
    assert settings.redis_url is None and settings.twelvedata_api_key is None
    assert settings.allowed_origins == DEFAULT_ALLOWED_ORIGINS
    assert "http://localhost:5173" in settings.allowed_origins
    assert settings.max_content_length == 16 * 1024


def test_type_ttl_beats_default_ttl_beats_builtin():
    settings = Settings.from_env({"CACHE_DEFAULT_TTL": "120", "QUOTE_TTL": "30"})

    assert settings.quote_ttl == 30
    assert settings.historical_ttl == 120
    assert settings.profile_ttl == 120


def test_values_are_parsed_and_normalised():
    settings = Settings.from_env(
        {
            "STOCK_PROVIDER": "TwelveData",
            "PROVIDER_TIMEOUT": "2.5",
            "ALLOWED_ORIGINS": "https://app.example.com/, http://localhost:5173",
            "DEFAULT_EXCHANGE": "bse",
            "TWELVEDATA_BASE_URL": "http://127.0.0.1:9100/twelvedata/",
            "TWELVEDATA_API_KEY": "  ",
        }
    )

    assert settings.stock_provider == "twelvedata"
    assert settings.provider_timeout == 2.5
    assert settings.allowed_origins == ("https://app.example.com", "http://localhost:5173")
    assert settings.default_exchange == "BSE"
    assert settings.twelvedata_base_url == "http://127.0.0.1:9100/twelvedata"
    assert settings.twelvedata_api_key is None


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"STOCK_PROVIDER": "yahoo"}, "STOCK_PROVIDER"),
        ({"DEFAULT_EXCHANGE": "NYSE"}, "DEFAULT_EXCHANGE"),
        ({"QUOTE_TTL": "soon"}, "QUOTE_TTL"),
        ({"QUOTE_TTL": "-5"}, "QUOTE_TTL"),
        ({"CACHE_MAX_SIZE": "1.5"}, "CACHE_MAX_SIZE"),
        ({"LOG_LEVEL": "CHATTY"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_stop_the_service_with_a_clear_message(env, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        Settings.from_env(env)


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env(
        {"TWELVEDATA_API_KEY": "td-secret", "FINNHUB_API_KEY": "fh-secret", "ADMIN_TOKEN": "adm"}
    )

    assert "secret" not in repr(settings) and "adm" not in repr(settings)
