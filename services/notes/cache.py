"""Redis cache, single-flight locks and pre-warm debouncing for generated notes.

No Flask, no database: the Redis client is passed in, every key starts with ``prefix``.

Storage layout (``P`` = prefix, ``K`` = note kind, ``S`` = session id, ``V`` = state_version,
``F`` = bundle fingerprint):

============================== ======== ==========================================================
key                            type     content
============================== ======== ==========================================================
``P:note:K:S:V``               string   the JSON payload generated for that version (a full copy,
                                        no TTL): ``{markdown, generator, model, generated_at,
                                        state_version, usage, fingerprint}``
``P:notefp:K:S:F``             string   the JSON payload most recently stored for that fingerprint
                                        (same document as above; no TTL). Reuse looks here, so it
                                        survives the deletion of old version keys.
``P:noteidx:S``                zset     every version key of the session (all kinds), scored by
                                        state_version: what :meth:`NoteCache.delete_older` walks
``P:notefps:S``                set      every fingerprint key of the session: what
                                        :meth:`NoteCache.forget_session` deletes
``P:notetag:K:S:V``            string   the version payload's entity tag (:func:`note_tag`), written
                                        with it: what a conditional preview compares, so that a
                                        304 never reads the note itself. Deleted with the
                                        version key; not counted in the index
``P:notehit:K:S:V``            string   the version's ready preview body, pre-rendered when it is
                                        stored: its tag, then the note's own fields as JSON
                                        fragments (:mod:`services.notes.preview_body`), so that a
                                        hit sends the stored bytes without parsing the note.
                                        Written, deleted and (like the tag) not indexed with the
                                        version key; a second copy of the note's text
``P:notelock:K:S:V``           string   single-flight lock: a random owner token (prefixed with
                                        the holding worker process's id), with PX expiry
``P:notequiet:S``              hash     ``version``, ``at_ms`` (Redis TIME) of the session's latest
                                        state_changed event; expires after an hour of silence
============================== ======== ==========================================================

Pub/sub channel ``P:notech:K:S:V`` carries the payload when it is stored, waking every
:meth:`NoteCache.wait` for that version.

Version keys hold copies rather than pointers so that a read is one GET and a version's
payload keeps its own ``state_version``/``generated_at``; the duplication is one note
(at most a few KiB) per version that was actually generated or re-stored.

Multi-key scripts assume a single Redis node (no cluster hash tags).

Length: one class owns every key of the layout above (a little over 500 lines with the Lua
scripts that change several of them at once); split, a key's writers and the scripts that must
keep it consistent with the others would live apart.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from services.notes.preview_body import pack_entry, rendered_parts, unpack_entry
from shared.redis_client import HotReads

QUIET_KEY_MIN_TTL_MS = 3600 * 1000
LOCK_CHECK_INTERVAL_S = 0.5

_PUT_SCRIPT = """
-- KEYS: version key, fingerprint key, session index, session fingerprint set, tag key, hit key
-- ARGV: payload, version, channel, has fingerprint ("1"/"0"), tag, rendered hit entry
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[5], ARGV[5])
redis.call('SET', KEYS[6], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[2], KEYS[1])
if ARGV[4] == '1' then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[4], KEYS[2])
end
return redis.call('PUBLISH', ARGV[3], ARGV[1])
"""

_GET_UNLESS_TAGGED_SCRIPT = """
-- KEYS: tag key, version key[, hit key]; ARGV: the client's tags. {1, tag} when the stored
-- tag is one of them (nothing else is read); else {2, the rendered hit entry} when there is a
-- hit key and it is stored, else {0, payload or nil}.
local tag = redis.call('GET', KEYS[1])
if tag then
  for i = 1, #ARGV do
    if ARGV[i] == tag then return {1, tag} end
  end
end
if KEYS[3] then
  local hit = redis.call('GET', KEYS[3])
  if hit then return {2, hit} end
end
return {0, redis.call('GET', KEYS[2])}
"""

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_ADOPT_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return false
"""

_NOTE_EVENT_SCRIPT = """
-- KEYS: quiet hash; ARGV: version, ttl_ms
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = tonumber(redis.call('HGET', KEYS[1], 'version'))
local version = tonumber(ARGV[1])
if current == nil or version >= current then
  redis.call('HSET', KEYS[1], 'version', ARGV[1], 'at_ms', now_ms)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return now_ms
"""

_QUIET_REMAINING_SCRIPT = """
-- KEYS: quiet hash; ARGV: version, quiet_ms. Returns -1 if superseded/unknown, else ms left.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.call('HMGET', KEYS[1], 'version', 'at_ms')
if not fields[1] or not fields[2] then return -1 end
if tonumber(fields[1]) ~= tonumber(ARGV[1]) then return -1 end
local left = tonumber(fields[2]) + tonumber(ARGV[2]) - now_ms
if left < 0 then left = 0 end
return left
"""


@dataclass(frozen=True)
class HitEntry:
    """A version's ready preview, as stored for the hit path: its entity tag and the note's
    own fields rendered (see services.notes.preview_body.hit_body)."""

    tag: str
    parts: tuple[bytes, bytes, bytes]


def _hit_entry(raw: Any) -> HitEntry | None:
    if raw is None:
        return None
    unpacked = unpack_entry(raw)
    return None if unpacked is None else HitEntry(*unpacked)


@dataclass(frozen=True)
class FlightLock:
    key: str
    token: str


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)


def _load(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = json.loads(_text(raw))
    return value if isinstance(value, dict) else None


def _token(holder: str | None) -> str:
    random = secrets.token_hex(16)
    return f"{holder}/{random}" if holder else random


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def note_tag(kind: str, session_id: str, state_version: int, payload: dict[str, Any]) -> str:
    """The opaque entity tag of a version's payload: a digest of (kind, session, version and
    the note's fingerprint), the note's fingerprint being the bundle fingerprint and when it
    was generated, so a note generated again for the same version (after an eviction) is a
    new tag. HTTP sends it as a weak tag: the preview's `from_cache` differs between the
    request that generated the note and the ones after."""
    parts = (
        kind,
        str(session_id),
        str(int(state_version)),
        str(payload.get("fingerprint") or ""),
        str(payload.get("generated_at") or ""),
    )
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


class NoteCache:
    """Generated notes in Redis, keyed by (kind, session_id, state_version)."""

    def __init__(self, redis: redis.Redis, prefix: str = "rf") -> None:
        if not prefix:
            raise ValueError("prefix is required")
        self.redis = redis
        self.hot_reads = HotReads(redis)
        self.prefix = prefix
        self._put = redis.register_script(_PUT_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)
        self._get_unless_tagged = redis.register_script(_GET_UNLESS_TAGGED_SCRIPT)
        self._extend = redis.register_script(_EXTEND_SCRIPT)
        self._adopt = redis.register_script(_ADOPT_SCRIPT)
        self._note_event = redis.register_script(_NOTE_EVENT_SCRIPT)
        self._quiet_remaining = redis.register_script(_QUIET_REMAINING_SCRIPT)

    # -- key names --------------------------------------------------------------------------

    def key(self, kind: str, session_id: str, state_version: int) -> str:
        return f"{self.prefix}:note:{kind}:{session_id}:{int(state_version)}"

    def fingerprint_key(self, kind: str, session_id: str, fingerprint: str) -> str:
        return f"{self.prefix}:notefp:{kind}:{session_id}:{fingerprint}"

    def index_key(self, session_id: str) -> str:
        return f"{self.prefix}:noteidx:{session_id}"

    def fingerprints_key(self, session_id: str) -> str:
        return f"{self.prefix}:notefps:{session_id}"

    def tag_key(self, kind: str, session_id: str, state_version: int) -> str:
        return f"{self.prefix}:notetag:{kind}:{session_id}:{int(state_version)}"

    def hit_key(self, kind: str, session_id: str, state_version: int) -> str:
        return f"{self.prefix}:notehit:{kind}:{session_id}:{int(state_version)}"

    def _tag_keys_of(self, version_keys: list[str]) -> list[str]:
        """The tag and hit keys that go with these version keys."""
        marker = f"{self.prefix}:note:"
        return [
            f"{self.prefix}:{name}:{key[len(marker) :]}"
            for key in version_keys
            if key.startswith(marker)
            for name in ("notetag", "notehit")
        ]

    def lock_key(self, kind: str, session_id: str, state_version: int) -> str:
        return f"{self.prefix}:notelock:{kind}:{session_id}:{int(state_version)}"

    def channel(self, kind: str, session_id: str, state_version: int) -> str:
        return f"{self.prefix}:notech:{kind}:{session_id}:{int(state_version)}"

    def quiet_key(self, session_id: str) -> str:
        return f"{self.prefix}:notequiet:{session_id}"

    # -- payloads ---------------------------------------------------------------------------

    def get(self, kind: str, session_id: str, state_version: int) -> dict[str, Any] | None:
        return _load(self.redis.get(self.key(kind, session_id, state_version)))

    def get_hit(self, kind: str, session_id: str, state_version: int) -> HitEntry | None:
        """The version's rendered preview (one GET of a string: the note is not parsed), or
        None when it is not stored (then :meth:`get` may still find the payload)."""
        return _hit_entry(self.hot_reads.get(self.hit_key(kind, session_id, state_version)))

    def get_hit_unless_tagged(
        self, kind: str, session_id: str, state_version: int, tags: list[str]
    ) -> tuple[str | None, HitEntry | None, dict[str, Any] | None]:
        """One round trip for a conditional preview: (the matching tag, None, None) when the
        version's stored tag is one of ``tags``, without reading anything else; else (None,
        the rendered preview, None), or (None, None, the payload or None) when there is no
        rendered one."""
        result = self.hot_reads.run_script(
            self._get_unless_tagged,
            keys=[
                self.tag_key(kind, session_id, state_version),
                self.key(kind, session_id, state_version),
                self.hit_key(kind, session_id, state_version),
            ],
            args=tags,
        )
        status = int(result[0])
        if status == 1:
            return _text(result[1]), None, None
        if status == 2:
            entry = _hit_entry(result[1])
            if entry is not None:
                return None, entry, None
            return None, None, self.get(kind, session_id, state_version)
        return None, None, _load(result[1] if len(result) > 1 else None)

    def get_unless_tagged(
        self, kind: str, session_id: str, state_version: int, tags: list[str]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """One round trip: (the matching tag, None) when the version's stored tag is one of
        ``tags``, without reading the payload; else (None, the payload or None)."""
        if not tags:
            return None, self.get(kind, session_id, state_version)
        result = self._get_unless_tagged(
            keys=[
                self.tag_key(kind, session_id, state_version),
                self.key(kind, session_id, state_version),
            ],
            args=list(tags),
        )
        if int(result[0]) == 1:
            return _text(result[1]), None
        return None, _load(result[1] if len(result) > 1 else None)

    def put(self, kind: str, session_id: str, state_version: int, payload: dict[str, Any]) -> None:
        """Store ``payload`` for the version (no TTL) with its tag and its rendered preview,
        index it, store it under its ``payload["fingerprint"]`` (when present) and publish it
        to every waiter, in one Lua script."""
        version = int(state_version)
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        fingerprint = payload.get("fingerprint")
        vkey = self.key(kind, session_id, version)
        fkey = self.fingerprint_key(kind, session_id, str(fingerprint)) if fingerprint else vkey
        tag = note_tag(kind, session_id, version, payload)
        self._put(
            keys=[
                vkey,
                fkey,
                self.index_key(session_id),
                self.fingerprints_key(session_id),
                self.tag_key(kind, session_id, version),
                self.hit_key(kind, session_id, version),
            ],
            args=[
                data,
                version,
                self.channel(kind, session_id, version),
                "1" if fingerprint else "0",
                tag,
                pack_entry(tag, rendered_parts(payload)),
            ],
        )

    def find_by_fingerprint(
        self, kind: str, session_id: str, fingerprint: str
    ) -> dict[str, Any] | None:
        """The payload last stored for an identical bundle of this session (any version)."""
        return _load(self.redis.get(self.fingerprint_key(kind, session_id, fingerprint)))

    def delete_older(self, session_id: str, keep_from_version: int) -> int:
        """Delete every version key (all kinds) of the session below ``keep_from_version``;
        fingerprint entries are kept. Returns the number of keys deleted."""
        index = self.index_key(session_id)
        members = self.redis.zrangebyscore(index, "-inf", f"({int(keep_from_version)}")
        if not members:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*members)
        pipe.zrem(index, *members)
        pipe.delete(*self._tag_keys_of([_text(m) for m in members]))
        deleted, _, _ = pipe.execute()
        return int(deleted)

    def forget_session(self, session_id: str) -> int:
        """Delete everything cached for the session: version keys, fingerprint entries, the
        indexes and the quiet-timer hash (locks expire on their own). Returns keys deleted."""
        index = self.index_key(session_id)
        fps = self.fingerprints_key(session_id)
        versions = [_text(m) for m in self.redis.zrange(index, 0, -1)]
        members = versions + [_text(m) for m in self.redis.smembers(fps)]
        keys = [*members, index, fps, self.quiet_key(session_id)]
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*keys)
        tags = self._tag_keys_of(versions)
        if tags:
            pipe.delete(*tags)
        return int(pipe.execute()[0])

    # -- single-flight lock -----------------------------------------------------------------

    def acquire(
        self,
        kind: str,
        session_id: str,
        state_version: int,
        ttl_s: float,
        *,
        holder: str | None = None,
    ) -> FlightLock | None:
        """Take the generation lock for the version (SET NX PX), or None if someone holds it.
        `holder` (the worker process's id) starts the token, so a waiter can tell whose it is."""
        key = self.lock_key(kind, session_id, state_version)
        token = _token(holder)
        if self.redis.set(key, token, nx=True, px=_ms(ttl_s)):
            return FlightLock(key=key, token=token)
        return None

    def adopt(self, lock: FlightLock, ttl_s: float, *, holder: str | None) -> FlightLock | None:
        """Take over a lock handed to us (a preview's, for the task now running): a new token
        naming `holder`, expiring in ``ttl_s``, only if ``lock`` still owns it."""
        token = _token(holder)
        if self._adopt(keys=[lock.key], args=[lock.token, token, _ms(ttl_s)]):
            return FlightLock(key=lock.key, token=token)
        return None

    def release(self, lock: FlightLock) -> bool:
        """Delete the lock only if ``lock`` still owns it."""
        return bool(self._release(keys=[lock.key], args=[lock.token]))

    def extend(self, lock: FlightLock, ttl_s: float) -> bool:
        """Reset the lock's expiry to ``ttl_s`` only if ``lock`` still owns it."""
        return bool(self._extend(keys=[lock.key], args=[lock.token, _ms(ttl_s)]))

    def lock_holder(self, kind: str, session_id: str, state_version: int) -> str | None:
        raw = self.redis.get(self.lock_key(kind, session_id, state_version))
        return None if raw is None else _text(raw)

    # -- waiting ----------------------------------------------------------------------------

    def wait(
        self,
        kind: str,
        session_id: str,
        state_version: int,
        timeout_s: float,
        *,
        stop_when_unlocked: bool = False,
    ) -> dict[str, Any] | None:
        """Block until the version's payload is stored, or ``timeout_s`` passes (-> None).

        Subscribes first and waits for the server's confirmation, then GETs (so a payload
        stored just before the subscription is not missed), then waits for the message
        against a deadline. ``timeout_s <= 0`` is a plain GET.

        With ``stop_when_unlocked``, it also returns None early once nobody holds the lock
        for the version (checked on subscription and every ~0.5 s): the owner died and its
        lock expired, or released it without storing a result, so the caller can try to
        acquire the lock itself. Leave it off when the generation may not have started yet.
        """
        if timeout_s <= 0:
            return self.get(kind, session_id, state_version)
        deadline = time.monotonic() + timeout_s
        channel = self.channel(kind, session_id, state_version)
        pubsub = self.redis.pubsub()
        try:
            try:
                pubsub.subscribe(channel)
                confirmed = False
                while not confirmed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return self.get(kind, session_id, state_version)
                    message = pubsub.get_message(timeout=remaining)
                    if message is not None and _text(message.get("type")) == "subscribe":
                        confirmed = True
                found = self.get(kind, session_id, state_version)
                if found is not None:
                    return found
                while True:
                    if stop_when_unlocked and (
                        self.lock_holder(kind, session_id, state_version) is None
                    ):
                        # A payload stored right before the lock was released is not lost.
                        return self.get(kind, session_id, state_version)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    slice_s = (
                        min(remaining, LOCK_CHECK_INTERVAL_S) if stop_when_unlocked else remaining
                    )
                    message = pubsub.get_message(timeout=slice_s)
                    if (
                        message is not None
                        and _text(message.get("type")) == "message"
                        and _text(message.get("channel")) == channel
                    ):
                        payload = _load(message.get("data"))
                        if payload is not None:
                            return payload
            except redis.ConnectionError:
                # The subscription broke: answer from the key itself.
                return self.get(kind, session_id, state_version)
        finally:
            pubsub.close()

    # -- pre-warm debouncing ----------------------------------------------------------------

    def note_event(self, session_id: str, state_version: int, quiet_s: float) -> None:
        """Record a state_changed event of the session at ``state_version`` (Redis TIME).
        Events may arrive out of order: one for an older version than the recorded one is
        ignored. The hash expires after an hour (or 4 x ``quiet_s``) without events."""
        ttl_ms = max(QUIET_KEY_MIN_TTL_MS, _ms(quiet_s) * 4)
        self._note_event(keys=[self.quiet_key(session_id)], args=[int(state_version), ttl_ms])

    def quiet_remaining(self, session_id: str, state_version: int, quiet_s: float) -> float | None:
        """None if ``state_version`` is not the latest recorded event of the session (or none
        is recorded); otherwise the seconds still to wait until it has been quiet for
        ``quiet_s`` (0.0 = quiet now). A check that runs a little early can reschedule
        itself with this countdown."""
        left = int(
            self._quiet_remaining(
                keys=[self.quiet_key(session_id)],
                args=[int(state_version), max(0, math.ceil(quiet_s * 1000))],
            )
        )
        return None if left < 0 else left / 1000.0

    def is_quiet(self, session_id: str, state_version: int, quiet_s: float) -> bool:
        """True if ``state_version`` is still the session's latest event and no event came
        for ``quiet_s`` seconds."""
        return self.quiet_remaining(session_id, state_version, quiet_s) == 0.0
