"""Client API keys in the shared store: kept only as SHA-256 digests, never as keys.

A key (``qp_<43 URL-safe characters>``, 256 random bits) is shown once, when it is created or
rotated. The store keeps a record per key id (name, tier, dates, revoked, digest) and an index
from digest to id; neither a key nor a key's digest ever appears in a Redis key name that a
``SCAN`` would list next to a client's address. Every change is audited (the last
``AUDIT_KEPT`` entries in Redis, and one log line each).

Validation is per worker and brief: a key validated less than ``RECHECK`` seconds ago is not
read again, so a revocation reaches every worker of every instance within that time, with no
extra Redis round trip on most requests. While the store is unreachable, a key validated in
the last ``GRACE`` seconds keeps working; others cannot be checked (``KeysUnavailable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import redis

from quantpulse.errors import BadRequest, QuantPulseError, ServiceUnavailable
from quantpulse.infra.namespace import NAMESPACE
from quantpulse.infra.store import retry_idempotent

log = logging.getLogger(__name__)

KEY_PREFIX = "qp_"
RECHECK = 1.0  # seconds a validated key is trusted without reading the store again
GRACE = 600.0  # seconds a validated key keeps working while the store is unreachable
AUDIT_KEPT = 1000
NAME = re.compile(r"[A-Za-z0-9 _.\-]{1,64}")
RECORDS = f"{NAMESPACE}:keys:record"  # hash: key id -> record (JSON)
DIGESTS = f"{NAMESPACE}:keys:digest"  # hash: digest -> key id
AUDIT = f"{NAMESPACE}:keys:audit"  # list, newest first
TOKENS = f"{NAMESPACE}:keys:stream_token"  # + ":<digest>": a stream token's key id and use
TOKEN_OPENS_WITHIN = 60  # seconds a new stream token may open its stream
TOKEN_RECONNECTS_FOR = 86400  # seconds the browser's reconnects of that stream are accepted
LAST_USED = f"{NAMESPACE}:keys:last_used"  # hash: key id -> when a worker last read it for a request


class KeyNotFound(QuantPulseError):
    status = 404
    title = "Key not found"


class KeysUnavailable(ServiceUnavailable):
    """The store that holds the keys cannot be read, and this key was not validated recently."""


@dataclass(frozen=True)
class KeyRecord:
    """What the store knows of a key; never the key."""

    id: str
    name: str
    tier: str
    created: str
    expires: str | None
    revoked: bool
    digest: str
    last_used: str | None = None

    def public(self) -> dict[str, Any]:
        """The record as the admin routes show it (no digest)."""
        document = asdict(self)
        del document["digest"]
        return document

    def usable(self, now: datetime) -> bool:
        return not self.revoked and (self.expires is None or datetime.fromisoformat(self.expires) > now)


@dataclass(frozen=True)
class Principal:
    """The client a valid key identifies."""

    key_id: str
    name: str
    tier: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class KeyStore:
    def __init__(
        self,
        client: Callable[[], redis.Redis],
        tiers: Iterable[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``client``: the shared store's client, asked each time (the store may fail over)."""
        self._client = client
        self._tiers = frozenset(tiers)
        self._clock = clock
        self._guard = threading.Lock()
        self._validated: dict[str, tuple[Principal | None, float]] = {}  # digest -> (who, when)
        self._live: dict[str, tuple[bool, float]] = {}  # key id -> (usable, when read)
        self._reading: set[str] = set()  # digests being read again right now

    # ---- validation (every keyed request) -----------------------------------------------

    def validate(self, key: str) -> Principal | None:
        """The client ``key`` identifies, or None when it is wrong, expired or revoked."""
        key_digest = digest(key)
        now = self._clock()
        with self._guard:
            known = self._validated.get(key_digest)
            # While one request reads the key again, the others go on with what it was.
            reading = key_digest in self._reading
            if known is not None and (now - known[1] < RECHECK or (reading and now - known[1] < GRACE)):
                return known[0]
            self._reading.add(key_digest)
        try:
            principal = self._look_up(key_digest)
        except redis.RedisError:
            if known is not None and known[0] is not None and now - known[1] < GRACE:
                return known[0]
            raise KeysUnavailable("API keys cannot be checked right now.", retry_after=5) from None
        finally:
            with self._guard:
                self._reading.discard(key_digest)
        with self._guard:
            if len(self._validated) > 10_000:
                self._validated.clear()
            self._validated[key_digest] = (principal, now)
        return principal

    def _look_up(self, key_digest: str) -> Principal | None:
        client = self._client()
        key_id = retry_idempotent(lambda: client.hget(DIGESTS, key_digest))
        record = self._record(client, key_id.decode()) if key_id else None
        if record is None or not record.usable(datetime.now(UTC)) or record.digest != key_digest:
            return None
        with contextlib.suppress(redis.RedisError):  # once a second per worker at most: a hint
            client.hset(LAST_USED, record.id, iso(datetime.now(UTC)))
        return Principal(record.id, record.name, record.tier)

    def live(self, key_id: str) -> bool:
        """Whether the key is still usable (not revoked, not expired), read at most once a
        second per worker: an open stream asks this to end when its key is revoked."""
        now = self._clock()
        with self._guard:
            known = self._live.get(key_id)
        if known is not None and now - known[1] < RECHECK:
            return known[0]
        try:
            record = self._record(self._client(), key_id)
        except redis.RedisError:
            return True if known is None else known[0]  # cannot tell: the stream goes on
        alive = record is not None and record.usable(datetime.now(UTC))
        with self._guard:
            if len(self._live) > 10_000:
                self._live.clear()
            self._live[key_id] = (alive, now)
        return alive

    # ---- stream tokens (EventSource cannot send headers) --------------------------------

    def stream_token(self, principal: Principal) -> tuple[str, datetime]:
        """A single-use token that opens one stream for this key within a minute."""
        token = secrets.token_urlsafe(24)
        issued = self._clock()
        record = self.get(principal.key_id)
        name = f"{TOKENS}:{digest(token)}"
        pipe = self._client().pipeline(transaction=True)
        pipe.hset(name, mapping={"key_id": record.id, "digest": record.digest, "issued": issued})
        pipe.expire(name, TOKEN_OPENS_WITHIN + 5)  # kept for a day once it has opened its stream
        pipe.execute()
        return token, datetime.fromtimestamp(issued + TOKEN_OPENS_WITHIN, UTC)

    def redeem(self, token: str, *, reconnect: bool) -> Principal | None:
        """The key a stream token stands for, if it may open a stream now: unused and under a
        minute old, or (``reconnect``: the browser sends ``Last-Event-ID``) already used for
        its stream, within a day; and its key still the same key (not rotated) and usable."""
        client = self._client()
        name = f"{TOKENS}:{digest(token)}"
        try:
            key_id = client.eval(
                _REDEEM, 1, name, self._clock(), TOKEN_OPENS_WITHIN, int(reconnect), TOKEN_RECONNECTS_FOR
            )
            if not key_id:
                return None
            record = self._record(client, key_id.decode())
            key_digest = client.hget(name, "digest")
        except redis.RedisError:
            raise KeysUnavailable("Stream tokens cannot be checked right now.", retry_after=5) from None
        if record is None or not record.usable(datetime.now(UTC)) or key_digest != record.digest.encode():
            return None
        return Principal(record.id, record.name, record.tier)

    # ---- administration -----------------------------------------------------------------

    def create(self, name: str, tier: str | None, expires: datetime | None) -> tuple[KeyRecord, str]:
        """A new key: its record, and the key itself (shown this once)."""
        key = new_key()
        record = KeyRecord(
            id=f"k_{secrets.token_hex(6)}",
            name=self._name(name),
            tier=self._tier(tier or "free"),
            created=iso(datetime.now(UTC)),
            expires=_expiry(expires),
            revoked=False,
            digest=digest(key),
        )
        self._change(record.id, lambda _: record, ("create", {"name": record.name, "tier": record.tier}))
        return record, key

    def list(self) -> list[KeyRecord]:
        client = self._client()
        used = {key_id.decode(): at.decode() for key_id, at in client.hgetall(LAST_USED).items()}
        records = (_decode(blob) for blob in client.hvals(RECORDS))
        return sorted(
            (replace(record, last_used=used.get(record.id)) for record in records),
            key=lambda record: record.created,
        )

    def get(self, key_id: str) -> KeyRecord:
        record = self._record(self._client(), key_id)
        if record is None:
            raise KeyNotFound(f"No key with id {key_id}.")
        return record

    def update(self, key_id: str, *, name: str | None = None, tier: str | None = None) -> KeyRecord:
        changes = {}
        if name is not None:
            changes["name"] = self._name(name)
        if tier is not None:
            changes["tier"] = self._tier(tier)
        return self._change(
            key_id, lambda record: replace(_existing(record, key_id), **changes), ("update", changes)
        )

    def rotate(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new key for the same id; the old one stops working."""
        key = new_key()

        def rotated(record: KeyRecord | None) -> KeyRecord:
            if _existing(record, key_id).revoked:
                raise BadRequest(f"Key {key_id} is revoked: issue a new one instead.")
            return replace(record, digest=digest(key))  # type: ignore[type-var]

        return self._change(key_id, rotated, ("rotate", {})), key

    def revoke(self, key_id: str) -> KeyRecord:
        return self._change(
            key_id, lambda record: replace(_existing(record, key_id), revoked=True), ("revoke", {})
        )

    def export(self) -> list[dict[str, Any]]:
        """Every record with its digest (never a key): a backup a Redis without persistence
        can be given back with ``restore``."""
        return [asdict(record) for record in self.list()]

    def restore(self, records: Iterable[Any], *, replace_existing: bool = False) -> int:
        """Put exported records back; returns how many were written (existing ids kept unless
        ``replace_existing``). Each is audited as ``import``."""
        written = 0
        for document in records:
            record = _imported(document)
            if not replace_existing and self._record(self._client(), record.id) is not None:
                continue
            self._change(record.id, lambda _, record=record: record, ("import", {}))  # type: ignore[misc]
            written += 1
        return written

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(entry) for entry in self._client().lrange(AUDIT, 0, AUDIT_KEPT - 1)]

    # ---- storage ------------------------------------------------------------------------

    def _change(
        self,
        key_id: str,
        change: Callable[[KeyRecord | None], KeyRecord],
        audit: tuple[str, dict[str, Any]],
    ) -> KeyRecord:
        """Read, change and write one record atomically (WATCH: a revoke racing an update or a
        rotation is never undone), with its digest index and an audit entry. A revoked key
        stays revoked whatever the change says."""
        action, detail = audit
        entry = {"action": action, "key_id": key_id, "detail": detail}
        written: list[KeyRecord] = []

        def write(pipe: redis.client.Pipeline) -> None:
            blob = pipe.hget(RECORDS, key_id)
            before = _decode(blob) if blob else None
            after = change(before)
            if before is not None and before.revoked:
                after = replace(after, revoked=True)
            pipe.multi()
            pipe.hset(RECORDS, key_id, json.dumps(asdict(replace(after, last_used=None))))
            if (before is not None and before.digest != after.digest) or after.revoked:
                pipe.hdel(DIGESTS, before.digest if before else after.digest)
            if not after.revoked:
                pipe.hset(DIGESTS, after.digest, key_id)
            pipe.lpush(AUDIT, json.dumps({"at": iso(datetime.now(UTC)), **entry}))
            pipe.ltrim(AUDIT, 0, AUDIT_KEPT - 1)
            written[:] = [after]

        try:
            self._client().transaction(write, RECORDS)
        except redis.RedisError:
            raise KeysUnavailable("The key store cannot be changed right now.", retry_after=5) from None
        log.info("api key %s: %s %s", action, key_id, json.dumps(detail))
        return written[0]

    @staticmethod
    def _record(client: redis.Redis, key_id: str) -> KeyRecord | None:
        blob = retry_idempotent(lambda: client.hget(RECORDS, key_id))
        return _decode(blob) if blob else None

    def _name(self, name: str) -> str:
        if not NAME.fullmatch(name):
            raise BadRequest("A key's name is 1-64 characters of A-Z a-z 0-9, space, _ . -")
        return name

    def _tier(self, tier: str) -> str:
        if tier.lower() not in self._tiers:
            raise BadRequest(f"Unknown tier {tier!r}.", hint=f"Tiers: {', '.join(sorted(self._tiers))}.")
        return tier.lower()


# KEYS: a stream token. ARGV: now, seconds a new token may open its stream, 1 for a reconnect,
# seconds its reconnects are accepted. The token's key id when it may open a stream now; checked
# and marked used in one step, so two first uses cannot both win and a late one marks nothing.
_REDEEM = """
local issued = redis.call('HGET', KEYS[1], 'issued')
if not issued then return false end
if redis.call('HGET', KEYS[1], 'used') then
  if ARGV[3] == '1' then return redis.call('HGET', KEYS[1], 'key_id') end
  return false
end
if tonumber(ARGV[1]) - tonumber(issued) > tonumber(ARGV[2]) then return false end
redis.call('HSET', KEYS[1], 'used', '1')
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('HGET', KEYS[1], 'key_id')
"""
_DIGEST = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"k_[0-9a-f]{12}")


def _existing(record: KeyRecord | None, key_id: str) -> KeyRecord:
    if record is None:
        raise KeyNotFound(f"No key with id {key_id}.")
    return record


def _expiry(expires: datetime | None) -> str | None:
    if expires is None:
        return None
    try:
        return iso(expires)
    except (OverflowError, ValueError):
        raise BadRequest("expires is out of range.") from None


def _imported(document: Any) -> KeyRecord:
    """An exported record, checked field by field (a bad one would break every request with it)."""
    try:
        record = KeyRecord(**document)
        valid = (
            _KEY_ID.fullmatch(record.id)
            and NAME.fullmatch(record.name)
            and _DIGEST.fullmatch(record.digest)
            and isinstance(record.revoked, bool)
            and isinstance(record.tier, str)
        )
        for moment in (record.created, record.expires):
            if moment is not None:
                datetime.fromisoformat(moment)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise BadRequest(f"Not an exported key record: {str(document)[:80]}")
    return record


def _decode(blob: bytes) -> KeyRecord:
    return KeyRecord(**json.loads(blob))
