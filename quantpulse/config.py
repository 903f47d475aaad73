"""Settings: the only place that reads ``os.environ``.

Every variable is documented in ``.env.example``; the names are fixed by ``docs/api.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from datetime import time as dt_time
from urllib.parse import urlsplit

from limits import parse_many

from quantpulse.errors import ConfigurationError

PROVIDER_MODES = ("auto", "twelvedata", "finnhub", "demo")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXCHANGES = ("NSE", "BSE")
MARKET_HOURS_MODES = ("calendar", "always_open", "always_closed")
API_KEY_MODES = ("off", "optional", "required")
DEFAULT_TIERS = (("free", "60/minute;2000/day"), ("pro", "600/minute;50000/day"))
_TIER_PREFIX = "API_TIER_"
_OVERRIDE = re.compile(
    r"(?P<day>\d{4}-\d{2}-\d{2})\s+(?:(?P<closed>closed)|(?P<open>\d{1,2}:\d{2})\s*-\s*(?P<close>\d{1,2}:\d{2}))",
    re.IGNORECASE,
)
# One day's session by override: its opening and closing times (IST), or None when closed.
SessionOverride = tuple[date, tuple[dt_time, dt_time] | None]

DEFAULT_ALLOWED_ORIGINS = (
    "http://localhost:3000",
    "http://127.0.0.1:3000",
    "http://localhost:5173",
    "http://127.0.0.1:5173",
    "http://localhost:4173",
    "http://127.0.0.1:4173",
)

_DEFAULT_TTLS = {"QUOTE_TTL": 60, "HISTORICAL_TTL": 300, "PROFILE_TTL": 86400}


@dataclass(frozen=True)
class Settings:
    """Typed, immutable configuration, built once by the app factory."""

    stock_provider: str = "auto"
    twelvedata_api_key: str | None = field(default=None, repr=False)
    finnhub_api_key: str | None = field(default=None, repr=False)
    twelvedata_base_url: str = "https://api.twelvedata.com"
    finnhub_base_url: str = "https://finnhub.io/api/v1"
    provider_timeout: float = 5.0
    redis_url: str | None = field(default=None, repr=False)
    quote_ttl: int = 60
    historical_ttl: int = 300
    profile_ttl: int = 86400
    quote_stale_ttl: int = 300
    historical_stale_ttl: int = 3600
    profile_stale_ttl: int = 7 * 86400
    negative_ttl: int = 60
    failure_ttl: int = 5
    lock_ttl: float = 10.0
    near_cache_ttl: int = 1
    refresh_ahead: float = 0.2
    redis_timeout: float = 1.0
    redis_max_connections: int = 4
    redis_pool_timeout: float = 2.0
    cache_max_size: int = 10000
    twelvedata_credits_per_minute: int | None = None
    twelvedata_credits_per_day: int | None = None
    finnhub_calls_per_minute: int | None = None
    finnhub_calls_per_second: int | None = None
    quota_minute_seconds: float = 60.0
    plan_cooldown: int = 6 * 3600
    circuit_failures: int = 5
    circuit_cooldown: int = 30
    rate_limit: str | None = None
    proxy_fix_hops: int = 0
    log_level: str = "INFO"
    admin_token: str | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS
    default_exchange: str = "NSE"
    max_content_length: int = 16 * 1024
    batch_concurrency: int = 8
    market_hours: str = "calendar"
    market_settle_minutes: int = 30
    market_calendar_overrides: tuple[SessionOverride, ...] = ()
    stream_heartbeat: float = 15.0
    stream_max_per_client: int = 5
    api_keys: str = "optional"
    api_tiers: tuple[tuple[str, str], ...] = DEFAULT_TIERS
    usage_retention_days: int = 90

    def __post_init__(self) -> None:
        if self.stock_provider not in PROVIDER_MODES:
            raise ConfigurationError(
                f"STOCK_PROVIDER={self.stock_provider!r} is not one of {', '.join(PROVIDER_MODES)}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigurationError(f"LOG_LEVEL={self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.redis_max_connections < 2:
            raise ConfigurationError(
                f"REDIS_MAX_CONNECTIONS={self.redis_max_connections} is too small: each worker needs one "
                "pub/sub connection and at least one for commands (2)"
            )
        if self.market_hours not in MARKET_HOURS_MODES:
            raise ConfigurationError(
                f"MARKET_HOURS={self.market_hours!r} is not one of {', '.join(MARKET_HOURS_MODES)}"
            )
        if self.api_keys not in API_KEY_MODES:
            raise ConfigurationError(f"API_KEYS={self.api_keys!r} is not one of {', '.join(API_KEY_MODES)}")
        if self.default_exchange not in EXCHANGES:
            raise ConfigurationError(
                f"DEFAULT_EXCHANGE={self.default_exchange!r} is not one of {', '.join(EXCHANGES)}"
            )

    def secrets(self) -> tuple[str | None, ...]:
        """Values that must never reach a log line (the Redis URL may carry a password)."""
        redis_password = urlsplit(self.redis_url).password if self.redis_url else None
        return (self.twelvedata_api_key, self.finnhub_api_key, self.admin_token, redis_password)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; a malformed value stops the service with a clear message."""
        env = _Env(os.environ if environ is None else environ)
        return cls(
            stock_provider=env.text("STOCK_PROVIDER", "auto").lower(),
            twelvedata_api_key=env.optional("TWELVEDATA_API_KEY"),
            finnhub_api_key=env.optional("FINNHUB_API_KEY"),
            twelvedata_base_url=env.text("TWELVEDATA_BASE_URL", cls.twelvedata_base_url).rstrip("/"),
            finnhub_base_url=env.text("FINNHUB_BASE_URL", cls.finnhub_base_url).rstrip("/"),
            provider_timeout=env.number("PROVIDER_TIMEOUT", cls.provider_timeout),
            redis_url=env.optional("REDIS_URL"),
            quote_ttl=env.ttl("QUOTE_TTL"),
            historical_ttl=env.ttl("HISTORICAL_TTL"),
            profile_ttl=env.ttl("PROFILE_TTL"),
            quote_stale_ttl=env.integer("QUOTE_STALE_TTL", cls.quote_stale_ttl, allow_zero=True),
            historical_stale_ttl=env.integer(
                "HISTORICAL_STALE_TTL", cls.historical_stale_ttl, allow_zero=True
            ),
            profile_stale_ttl=env.integer("PROFILE_STALE_TTL", cls.profile_stale_ttl, allow_zero=True),
            negative_ttl=env.integer("NEGATIVE_TTL", cls.negative_ttl),
            failure_ttl=env.integer("FAILURE_TTL", cls.failure_ttl, allow_zero=True),
            lock_ttl=env.number("LOCK_TTL", cls.lock_ttl),
            near_cache_ttl=env.integer("NEAR_CACHE_TTL", cls.near_cache_ttl, allow_zero=True),
            refresh_ahead=env.number("REFRESH_AHEAD", cls.refresh_ahead, allow_zero=True),
            redis_timeout=env.number("REDIS_TIMEOUT", cls.redis_timeout),
            redis_max_connections=env.integer("REDIS_MAX_CONNECTIONS", cls.redis_max_connections),
            redis_pool_timeout=env.number("REDIS_POOL_TIMEOUT", cls.redis_pool_timeout),
            cache_max_size=env.integer("CACHE_MAX_SIZE", cls.cache_max_size),
            twelvedata_credits_per_minute=env.optional_integer("TWELVEDATA_CREDITS_PER_MINUTE"),
            twelvedata_credits_per_day=env.optional_integer("TWELVEDATA_CREDITS_PER_DAY"),
            finnhub_calls_per_minute=env.optional_integer("FINNHUB_CALLS_PER_MINUTE"),
            finnhub_calls_per_second=env.optional_integer("FINNHUB_CALLS_PER_SECOND"),
            quota_minute_seconds=env.number("QUOTA_MINUTE_SECONDS", cls.quota_minute_seconds),
            plan_cooldown=env.integer("PLAN_COOLDOWN", cls.plan_cooldown),
            circuit_failures=env.integer("CIRCUIT_FAILURES", cls.circuit_failures),
            circuit_cooldown=env.integer("CIRCUIT_COOLDOWN", cls.circuit_cooldown),
            rate_limit=env.optional("RATE_LIMIT"),
            proxy_fix_hops=env.integer("PROXY_FIX_HOPS", cls.proxy_fix_hops, allow_zero=True),
            log_level=env.text("LOG_LEVEL", cls.log_level).upper(),
            admin_token=env.optional("ADMIN_TOKEN"),
            allowed_origins=env.csv("ALLOWED_ORIGINS", DEFAULT_ALLOWED_ORIGINS),
            default_exchange=env.text("DEFAULT_EXCHANGE", cls.default_exchange).upper(),
            max_content_length=env.integer("MAX_CONTENT_LENGTH", cls.max_content_length),
            batch_concurrency=env.integer("BATCH_CONCURRENCY", cls.batch_concurrency),
            market_hours=env.text("MARKET_HOURS", _default_market_hours(env)).lower(),
            market_settle_minutes=env.integer(
                "MARKET_SETTLE_MINUTES", cls.market_settle_minutes, allow_zero=True
            ),
            market_calendar_overrides=env.session_overrides("MARKET_CALENDAR_OVERRIDES"),
            stream_heartbeat=env.number("STREAM_HEARTBEAT", cls.stream_heartbeat),
            stream_max_per_client=env.integer("STREAM_MAX_PER_CLIENT", cls.stream_max_per_client),
            api_keys=_api_key_mode(env),
            api_tiers=env.tiers(),
            usage_retention_days=env.integer("USAGE_RETENTION_DAYS", cls.usage_retention_days),
        )

    @property
    def keys_enabled(self) -> bool:
        """API keys are checked (``optional`` or ``required``); they need the shared store."""
        return self.api_keys != "off" and self.redis_url is not None


def _session_override(text: str) -> SessionOverride:
    match = _OVERRIDE.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        day = date.fromisoformat(match["day"])
        if match["closed"]:
            return day, None
        opens, closes = (dt_time.fromisoformat(match[edge].zfill(5)) for edge in ("open", "close"))
    except ValueError:
        raise ValueError(repr(text)) from None
    if opens >= closes:
        raise ValueError(repr(text))
    return day, (opens, closes)


def _api_key_mode(env: _Env) -> str:
    """``API_KEYS``; keys live in the shared store, so without ``REDIS_URL`` they are ``off``."""
    mode = env.text("API_KEYS", "optional").lower()
    return mode if env.optional("REDIS_URL") or mode not in API_KEY_MODES else "off"


def _default_market_hours(env: _Env) -> str:
    """``calendar``, except in demo-only operation (no live provider configured), where
    ``always_open`` keeps the demo prices moving at any hour (docs/api.md, "Market hours")."""
    mode = env.text("STOCK_PROVIDER", "auto").lower()
    keys = env.optional("TWELVEDATA_API_KEY") or env.optional("FINNHUB_API_KEY")
    return "always_open" if mode == "demo" or (mode == "auto" and not keys) else "calendar"


class _Env:
    """Typed reads of one environment mapping; blank values count as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def optional(self, name: str) -> str | None:
        return self._raw(name)

    def csv(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self._raw(name)
        if raw is None:
            return default
        return tuple(item.strip().rstrip("/") for item in raw.split(",") if item.strip())

    def tiers(self) -> tuple[tuple[str, str], ...]:
        """Every ``API_TIER_<NAME>`` (lower-cased name, Flask-Limiter limits), over the defaults."""
        tiers = dict(DEFAULT_TIERS)
        for name in self._environ:
            if name.startswith(_TIER_PREFIX) and len(name) > len(_TIER_PREFIX):
                limits = self._raw(name)
                if limits is not None:
                    try:
                        parse_many(limits)
                    except ValueError:
                        raise ConfigurationError(
                            f"{name}={limits!r} is not a limit list such as 60/minute;2000/day"
                        ) from None
                    tiers[name[len(_TIER_PREFIX) :].lower()] = limits
        return tuple(sorted(tiers.items()))

    def optional_integer(self, name: str) -> int | None:
        """Unset means "no limit of this kind", not a default."""
        return None if self._raw(name) is None else self.integer(name, 0)

    def integer(self, name: str, default: int, *, allow_zero: bool = False) -> int:
        value = self.number(name, default, allow_zero=allow_zero)
        if value != int(value):
            raise ConfigurationError(f"{name} must be a whole number, got {value}")
        return int(value)

    def number(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigurationError(f"{name} must be positive, got {raw!r}")
        return value

    def session_overrides(self, name: str) -> tuple[SessionOverride, ...]:
        """``"2026-11-08 18:00-19:15; 2026-12-31 closed"``: special sessions and closures (IST)."""
        parts = [part.strip() for part in (self._raw(name) or "").split(";") if part.strip()]
        try:
            return tuple(_session_override(part) for part in parts)
        except ValueError as error:
            raise ConfigurationError(
                f"{name}: {error} is not 'YYYY-MM-DD HH:MM-HH:MM' or 'YYYY-MM-DD closed'"
            ) from None

    def ttl(self, name: str) -> int:
        """A type's own TTL, else ``CACHE_DEFAULT_TTL``, else the built-in default (docs/api.md)."""
        fallback = self.integer("CACHE_DEFAULT_TTL", _DEFAULT_TTLS[name])
        return self.integer(name, fallback)
