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
        document = json.dumps({"key_id": principal.key_id, "issued": issued})
        self._client().set(f"{TOKENS}:{digest(token)}", document, ex=TOKEN_RECONNECTS_FOR)
        return token, datetime.fromtimestamp(issued + TOKEN_OPENS_WITHIN, UTC)

    def redeem(self, token: str, *, reconnect: bool) -> Principal | None:
        """The key a stream token stands for, if it may open a stream now: unused and under a
        minute old, or (``reconnect``: the browser sends ``Last-Event-ID``) already used for
        this stream, within a day; and its key still usable."""
        try:
            return self._redeem(self._client(), f"{TOKENS}:{digest(token)}", reconnect)
        except redis.RedisError:
            raise KeysUnavailable("Stream tokens cannot be checked right now.", retry_after=5) from None

    def _redeem(self, client: redis.Redis, name: str, reconnect: bool) -> Principal | None:
        blob = retry_idempotent(lambda: client.get(name))
        if blob is None:
            return None
        document = json.loads(blob)
        first_use = bool(client.set(f"{name}:used", 1, nx=True, ex=TOKEN_RECONNECTS_FOR))
        if first_use and self._clock() - document["issued"] > TOKEN_OPENS_WITHIN:
            return None
        if not first_use and not reconnect:
            return None
        record = self._record(client, document["key_id"])
        if record is None or not record.usable(datetime.now(UTC)):
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
            expires=iso(expires) if expires else None,
            revoked=False,
            digest=digest(key),
        )
        self._save(record, audit=("create", {"name": record.name, "tier": record.tier}))
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
        record = self.get(key_id)
        changes = {"name": self._name(name) if name is not None else record.name}
        changes["tier"] = self._tier(tier) if tier is not None else record.tier
        updated = replace(record, **changes)
        self._save(updated, audit=("update", {k: v for k, v in changes.items() if getattr(record, k) != v}))
        return updated

    def rotate(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new key for the same id; the old one stops working."""
        record = self.get(key_id)
        key = new_key()
        rotated = replace(record, digest=digest(key))
        self._save(rotated, audit=("rotate", {}), retired=record.digest)
        return rotated, key

    def revoke(self, key_id: str) -> KeyRecord:
        record = self.get(key_id)
        if record.revoked:
            return record
        revoked = replace(record, revoked=True)
        self._save(revoked, audit=("revoke", {}), retired=record.digest)
        return revoked

    def export(self) -> list[dict[str, Any]]:
        """Every record with its digest (never a key): a backup a Redis without persistence
        can be given back with ``restore``."""
        return [asdict(record) for record in self.list()]

    def restore(self, records: Iterable[dict[str, Any]], *, replace_existing: bool = False) -> int:
        """Put exported records back; returns how many were written (existing ids kept unless
        ``replace_existing``). Each is audited as ``import``."""
        written = 0
        for document in records:
            try:
                record = KeyRecord(**document)
            except TypeError:
                raise BadRequest(f"Not an exported key record: {sorted(document)}") from None
            if not replace_existing and self._record(self._client(), record.id) is not None:
                continue
            self._save(replace(record, last_used=None), audit=("import", {}))
            written += 1
        return written

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(entry) for entry in self._client().lrange(AUDIT, 0, AUDIT_KEPT - 1)]

    # ---- storage ------------------------------------------------------------------------

    def _save(
        self, record: KeyRecord, *, audit: tuple[str, dict[str, Any]], retired: str | None = None
    ) -> None:
        """The record, its digest index (the retired digest dropped) and an audit entry, at once."""
        action, detail = audit
        entry = json.dumps(
            {"at": iso(datetime.now(UTC)), "action": action, "key_id": record.id, "detail": detail}
        )
        pipe = self._client().pipeline(transaction=True)
        pipe.hset(RECORDS, record.id, json.dumps(asdict(record)))
        if retired is not None:
            pipe.hdel(DIGESTS, retired)
        if not record.revoked:
            pipe.hset(DIGESTS, record.digest, record.id)
        pipe.lpush(AUDIT, entry)
        pipe.ltrim(AUDIT, 0, AUDIT_KEPT - 1)
        pipe.execute()
        log.info("api key %s: %s %s", action, record.id, json.dumps(detail))

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


def _decode(blob: bytes) -> KeyRecord:
    return KeyRecord(**json.loads(blob))
