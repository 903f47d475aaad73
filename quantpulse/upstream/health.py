"""Provider health, fleet-wide: no worker calls a provider inside a known cooldown.

What a provider answered decides how long the whole fleet leaves it alone:

* rate limited → benched until its window resets (minute or day, told apart by the message);
* auth failure → disabled until the configuration changes (the key's fingerprint is in the
  store key, so a new key starts afresh), logged loudly;
* plan/entitlement → that (provider, endpoint, exchange) is disabled for ``plan_cooldown``;
* ``circuit_failures`` transient failures within ``circuit_window`` → the circuit opens for
  ``circuit_cooldown``; then exactly one worker in the fleet probes, and its answer closes or
  reopens the circuit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis

from quantpulse.errors import FailureKind, ProviderError, skipped_call
from quantpulse.infra.namespace import NAMESPACE

log = logging.getLogger(__name__)

STATE_OK = "ok"
STATE_COOLDOWN = "cooldown"
STATE_DISABLED = "disabled"


@dataclass(frozen=True)
class HealthSettings:
    plan_cooldown: int = 6 * 3600
    circuit_failures: int = 5
    circuit_window: int = 30
    circuit_cooldown: int = 30
    probe_ttl: int = 15
    auth_memory: int = 7 * 86400


class _Keys:
    """The store keys of one provider's health."""

    def __init__(self, provider: str, fingerprint: str) -> None:
        self.provider = provider
        base = f"{NAMESPACE}:health:{provider}"
        self.cooldown = f"{base}:cooldown"
        self.auth = f"{base}:auth:{fingerprint}"
        self.transient = f"{base}:transient"
        self.half_open = f"{base}:half_open"
        self.probe = f"{base}:probe"
        self._base = base

    def plan(self, endpoint: str, exchange: str | None) -> str:
        return f"{self._base}:plan:{endpoint}:{exchange or '*'}"


class ProviderHealth:
    def __init__(self, fingerprints: dict[str, str], settings: HealthSettings | None = None) -> None:
        self._keys = {provider: _Keys(provider, fp) for provider, fp in fingerprints.items()}
        self._settings = settings or HealthSettings()

    def blocked(
        self, client: redis.Redis, provider: str, endpoint: str, exchange: str | None, now: float
    ) -> ProviderError | None:
        """Why ``provider`` must not be called now, or None; may make this caller the probe."""
        keys = self._keys[provider]
        cooldown, auth, plan, half_open = client.mget(
            [keys.cooldown, keys.auth, keys.plan(endpoint, exchange), keys.half_open]
        )
        if auth is not None:
            return skipped_call(provider, FailureKind.AUTH, "disabled: the API key was rejected")
        if plan is not None:
            return skipped_call(provider, FailureKind.PLAN, f"{endpoint} on {exchange} needs a higher plan")
        if cooldown is not None:
            state = json.loads(cooldown)
            wait = max(1, round(state["until"] - now))
            return skipped_call(provider, FailureKind(state["kind"]), "cooling down", retry_after=wait)
        if half_open is not None and not client.set(keys.probe, "1", nx=True, ex=self._settings.probe_ttl):
            return skipped_call(provider, FailureKind.TRANSIENT, "another worker is probing", retry_after=1)
        return None

    def observe(
        self,
        client: redis.Redis,
        provider: str,
        endpoint: str,
        exchange: str | None,
        error: ProviderError | None,
        now: float,
    ) -> None:
        """Learn from one upstream answer."""
        keys = self._keys[provider]
        if error is None:
            client.delete(keys.transient, keys.half_open, keys.probe)
        elif error.kind is FailureKind.RATE_LIMITED:
            self._cool_down(client, keys, error.kind, error.retry_after or 60, now)
        elif error.kind is FailureKind.AUTH:
            log.error("%s rejected the configured API key: disabled until the key changes", provider)
            client.set(keys.auth, error.message[:200], ex=self._settings.auth_memory)
        elif error.kind is FailureKind.PLAN:
            cooldown = self._settings.plan_cooldown
            log.warning(
                "%s: %s on %s is not in the plan; skipped for %d s", provider, endpoint, exchange, cooldown
            )
            client.set(keys.plan(endpoint, exchange), error.message[:200], ex=cooldown)
        elif error.kind is FailureKind.TRANSIENT:
            self._count_transient(client, keys, now)

    def _count_transient(self, client: redis.Redis, keys: _Keys, now: float) -> None:
        settings = self._settings
        pipe = client.pipeline()
        pipe.incr(keys.transient)
        pipe.expire(keys.transient, settings.circuit_window, nx=True)
        pipe.exists(keys.half_open)
        failures, _, probing = pipe.execute()
        if failures >= settings.circuit_failures or probing:
            log.warning(
                "%s: circuit open for %d s after repeated failures", keys.provider, settings.circuit_cooldown
            )
            self._cool_down(client, keys, FailureKind.TRANSIENT, settings.circuit_cooldown, now)
            client.set(keys.half_open, "1", ex=settings.circuit_cooldown * 10)
            client.delete(keys.transient, keys.probe)

    @staticmethod
    def _cool_down(client: redis.Redis, keys: _Keys, kind: FailureKind, seconds: int, now: float) -> None:
        state = json.dumps({"kind": kind.value, "until": now + seconds})
        client.set(keys.cooldown, state, px=int(seconds * 1000))

    def state(self, client: redis.Redis, provider: str, now: float) -> dict[str, Any]:
        """``state`` (ok, cooldown, disabled) and ``cooldown_until`` (epoch seconds or None)."""
        keys = self._keys[provider]
        cooldown, auth = client.mget([keys.cooldown, keys.auth])
        if auth is not None:
            return {"state": STATE_DISABLED, "cooldown_until": None}
        if cooldown is not None:
            return {"state": STATE_COOLDOWN, "cooldown_until": json.loads(cooldown)["until"]}
        return {"state": STATE_OK, "cooldown_until": None}
