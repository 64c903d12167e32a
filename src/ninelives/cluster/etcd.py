"""The etcd coordinator: etcd v3 through its JSON gateway over HTTP (httpx).

etcd serves its gRPC API as JSON on the client port (``/v3/...``, since etcd 3.4; keys
and values base64, 64-bit numbers as strings). The gateway is part of etcd itself and
stable across 3.4 to 3.6, so this module needs no generated code and no gRPC runtime: a
dozen small requests, translated at this boundary into the coordinator's errors.

- **Leases** are etcd leases, one per key (``/v3/lease/grant``, ``keepalive``,
  ``revoke``). etcd counts lease time in whole seconds and grants at least its minimum
  (2 s with default server settings); the TTL it grants is what the lease carries.
- **Acquire** reads the key first (a follower that finds a holder costs one read), then
  grants a lease and creates the key in a transaction that succeeds only if the key does
  not exist (``create_revision == 0``); a lost race revokes the lease it granted.
- **Fencing token**: the key's ``create_revision``, which etcd takes from its one
  cluster-wide revision counter, so it grows with every new holder.
- **Renew** is a keepalive, then a transaction: if the key is still bound to our lease,
  put the same value with the same lease (a new ``mod_revision``, which every watcher
  sees); else read it and raise LeaseLost (a key deleted by hand, or by a switchover, must
  end the holder's term too). Two requests, as a keepalive and a read would be.
- **A dead holder's lease** (:class:`~ninelives.cluster.coordinator.VisibleRenewals`):
  since every renewal writes the key, a follower that saw the same ``mod_revision`` for a
  whole lease deletes the key in a transaction conditioned on that ``mod_revision``, then
  revokes the lease, rather than wait up to 500 ms more for etcd's lessor, which looks for
  expired leases on that tick. The condition makes it atomic against a renewal: either
  the renewal's put came first (the delete is not done) or the delete did (the renewal's
  transaction finds the key gone and fails). Why the holder has stopped by then is in
  :mod:`ninelives.cluster.election`. ``granted_ttl`` asks etcd the holder's lease TTL
  (``/v3/lease/timetolive``), once per term, so a holder configured with a longer lease
  than the follower is waited for as long as it may act.
- **Compare-and-set** is a transaction on the key's ``mod_revision``.
- **Watch** is one streaming request (``/v3/watch``): newline-separated JSON messages,
  the first confirming the watch is created. A stream that ends raises
  CoordinatorUnavailable; the caller reads again and watches anew. A silent network cut
  does not end the stream by itself: lease renewal, which has deadlines, notices it.

Endpoints are tried in order. A request moves to the next endpoint only when it could
not connect (it was never sent); one that was sent and then failed is not repeated
elsewhere, since it may have been applied.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from types import TracebackType
from typing import Any, Self

import httpx

from ninelives.cluster.coordinator import (
    MEMBERS_PREFIX,
    Change,
    ChangeKind,
    Conflict,
    CoordinatorUnavailable,
    Entry,
    Lease,
    LeaseLost,
    Member,
    Phase,
    prefix_end,
)

log = logging.getLogger(__name__)
_NOT_FOUND = 5  # gRPC status code: etcd's "requested lease not found"

Json = dict[str, Any]


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class EtcdError(Exception):
    """etcd answered with an error status: its gRPC ``code`` and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class EtcdCoordinator:
    """The :class:`~ninelives.cluster.coordinator.Coordinator` on etcd v3. Build with open()."""

    def __init__(
        self,
        endpoints: Sequence[str],
        prefix: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        request_timeout: float | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("expected at least one etcd endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = prefix.rstrip("/") + "/"
        self._ttl = ttl
        self.clock = clock
        # Half a lease: a request still unanswered then cannot save the lease anyway.
        self.request_timeout = request_timeout if request_timeout is not None else ttl / 2
        self._client = httpx.AsyncClient(timeout=self.request_timeout)
        self._current = 0  # the endpoint that answered last

    @classmethod
    async def open(
        cls,
        endpoints: Sequence[str],
        prefix: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        request_timeout: float | None = None,
    ) -> EtcdCoordinator:
        """Connect and check that etcd answers; raise CoordinatorUnavailable if not."""
        coordinator = cls(endpoints, prefix, ttl, clock=clock, request_timeout=request_timeout)
        try:
            await coordinator._call(
                "open", "/v3/kv/range", {"key": _b64(coordinator.prefix), "count_only": True}
            )
        except BaseException:
            await coordinator.close()
            raise
        return coordinator

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    # -- the HTTP shell --------------------------------------------------------------------

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._current + i) % n for i in range(n)]

    async def _call(self, phase: Phase, path: str, body: Json) -> Json:
        """POST ``body``; any error etcd answers is CoordinatorUnavailable."""
        try:
            return await self._post(phase, path, body)
        except EtcdError as error:
            raise CoordinatorUnavailable(phase, f"etcd at {self.endpoint}{path}: {error}") \
                from error

    async def _lease_call(self, phase: Phase, path: str, body: Json) -> Json | None:
        """As _call, but None when etcd does not know the lease (expired or revoked)."""
        try:
            return await self._post(phase, path, body)
        except EtcdError as error:
            if error.code == _NOT_FOUND:
                return None
            raise CoordinatorUnavailable(phase, f"etcd at {self.endpoint}{path}: {error}") \
                from error

    async def _post(self, phase: Phase, path: str, body: Json) -> Json:
        """POST ``body`` to the first endpoint that accepts a connection.

        Raise EtcdError for an error status, CoordinatorUnavailable when no endpoint
        answered or the answer is not what the gateway sends.
        """
        failures: list[str] = []
        for index in self._order():
            endpoint = self.endpoints[index]
            try:
                response = await self._client.post(endpoint + path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                failures.append(f"{endpoint}: {_describe(error)}")
                continue
            except httpx.HTTPError as error:
                raise CoordinatorUnavailable(
                    phase, f"etcd at {endpoint}{path}: {_describe(error)}"
                ) from error
            self._current = index
            return _answer(phase, endpoint + path, response)
        raise CoordinatorUnavailable(phase, "no etcd endpoint answered: " + "; ".join(failures))

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _entry(self, kv: Json) -> Entry:
        return Entry(
            key=_unb64(kv["key"])[len(self.prefix):],
            value=_unb64(kv.get("value", "")),
            token=int(kv.get("create_revision", 0)),
            version=int(kv.get("mod_revision", 0)),
            leased=int(kv.get("lease", 0)) != 0,
            lease_id=int(kv.get("lease", 0)),
        )

    async def _range(self, phase: Phase, key: str) -> Json | None:
        answer = await self._call(phase, "/v3/kv/range", {"key": _b64(self._key(key))})
        with _unexpected(phase, answer):
            kvs: list[Json] = answer.get("kvs", [])
        return kvs[0] if kvs else None

    async def _grant(self, phase: Phase) -> tuple[int, float, float]:
        """A new lease: its id, the TTL etcd granted, and when the request was sent."""
        sent = self.clock()
        answer = await self._call(phase, "/v3/lease/grant", {"TTL": str(math.ceil(self._ttl))})
        with _unexpected(phase, answer):
            lease_id, granted = int(answer.get("ID", 0)), float(answer.get("TTL", 0))
        if not lease_id or granted <= 0:
            raise CoordinatorUnavailable(phase, f"etcd granted no lease: {answer}")
        if granted != self._ttl:
            log.debug("etcd granted a %gs lease for %gs asked", granted, self._ttl)
        return lease_id, granted, sent

    async def _revoke(self, phase: Phase, lease_id: int) -> None:
        # Not found: already expired or revoked, which is what was wanted.
        await self._lease_call(phase, "/v3/lease/revoke", {"ID": str(lease_id)})

    # -- the interface ---------------------------------------------------------------------

    async def acquire(self, key: str, value: str) -> Lease | None:
        if await self._range("acquire", key) is not None:
            return None
        lease_id, granted, sent = await self._grant("acquire")
        full = _b64(self._key(key))
        answer = await self._call("acquire", "/v3/kv/txn", {
            "compare": [{"key": full, "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": full, "value": _b64(value),
                                         "lease": str(lease_id)}}],
        })
        if not answer.get("succeeded", False):
            await self._revoke("acquire", lease_id)
            return None
        with _unexpected("acquire", answer):
            token = int(answer["header"]["revision"])
        return Lease(key, value, token=token, id=lease_id, ttl=granted, renewed_at=sent)

    async def renew(self, lease: Lease) -> Lease:
        sent = self.clock()
        answer = await self._lease_call("renew", "/v3/lease/keepalive", {"ID": str(lease.id)})
        with _unexpected("renew", answer):
            ttl = float((answer or {}).get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseLost("renew", f"{lease.key}: the lease expired (token {lease.token})")
        # Still ours: written again, same value and lease, so the key's version tells every
        # watcher that this renewal happened (election: a follower's view of a dead holder).
        full = _b64(self._key(lease.key))
        written = await self._call("renew", "/v3/kv/txn", {
            "compare": [{"key": full, "target": "LEASE", "result": "EQUAL",
                         "lease": str(lease.id)}],
            "success": [{"request_put": {"key": full, "value": _b64(lease.value),
                                         "lease": str(lease.id)}}],
            "failure": [{"request_range": {"key": full}}],
        })
        if not written.get("succeeded", False):
            with _unexpected("renew", written):
                kvs: list[Json] = written["responses"][0]["response_range"].get("kvs", [])
            kv = kvs[0] if kvs else None
            await self._revoke("renew", lease.id)
            now = "gone" if kv is None else f"held with token {kv.get('create_revision')}"
            raise LeaseLost("renew", f"{lease.key}: the key is {now}, not ours "
                                     f"(token {lease.token})")
        return Lease(lease.key, lease.value, lease.token, lease.id, ttl, sent)

    async def release(self, lease: Lease) -> None:
        await self._revoke("release", lease.id)

    async def granted_ttl(self, entry: Entry) -> float | None:
        if not entry.lease_id:
            return None
        answer = await self._call("granted_ttl", "/v3/lease/timetolive",
                                  {"ID": str(entry.lease_id)})
        with _unexpected("granted_ttl", answer):
            left, granted = int(answer.get("TTL", -1)), float(answer.get("grantedTTL", 0))
        return granted if left >= 0 and granted > 0 else None

    async def revoke_unrenewed(self, entry: Entry) -> bool:
        full = _b64(self._key(entry.key))
        answer = await self._call("revoke", "/v3/kv/txn", {
            "compare": [{"key": full, "target": "MOD", "result": "EQUAL",
                         "mod_revision": str(entry.version)}],
            "success": [{"request_delete_range": {"key": full}}],
        })
        if not answer.get("succeeded", False):
            return False
        if entry.lease_id:  # bound to nothing now; ended so that its holder hears at once
            await self._revoke("revoke", entry.lease_id)
        return True

    async def get(self, key: str) -> Entry | None:
        kv = await self._range("get", key)
        if kv is None:
            return None
        with _unexpected("get", kv):
            return self._entry(kv)

    async def compare_and_set(self, key: str, value: str, expected: int | None) -> Entry:
        full = _b64(self._key(key))
        compare = (
            {"key": full, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
            if expected is None
            else {"key": full, "target": "MOD", "result": "EQUAL", "mod_revision": str(expected)}
        )
        read = {"request_range": {"key": full}}
        answer = await self._call("compare_and_set", "/v3/kv/txn", {
            "compare": [compare],
            "success": [{"request_put": {"key": full, "value": _b64(value)}}, read],
            "failure": [read],
        })
        with _unexpected("compare_and_set", answer):
            kvs: list[Json] = answer["responses"][-1]["response_range"].get("kvs", [])
            current = self._entry(kvs[0]) if kvs else None
        if not answer.get("succeeded", False):
            raise Conflict(key, expected, current)
        if current is None:
            raise CoordinatorUnavailable("compare_and_set", f"{key}: written but not read back")
        return current

    def watch(self, prefix: str) -> EtcdWatch:
        return EtcdWatch(self, prefix)

    async def register(self, member: Member, lease: Lease | None = None) -> Lease:
        value = member.to_json()
        if lease is None:
            lease_id, granted, sent = await self._grant("register")
        else:
            lease_id, granted, sent = lease.id, lease.ttl, lease.renewed_at
        answer = await self._lease_call("register", "/v3/kv/put", {
            "key": _b64(self._key(member.key)), "value": _b64(value), "lease": str(lease_id),
        })
        if answer is None:
            raise LeaseLost("register", f"{member.key}: the lease expired")
        with _unexpected("register", answer):
            revision = int(answer["header"]["revision"])
        token = lease.token if lease is not None else revision
        return Lease(member.key, value, token, lease_id, granted, sent)

    async def members(self) -> list[Member]:
        start = self._key(MEMBERS_PREFIX).encode()
        answer = await self._call("members", "/v3/kv/range", {
            "key": _b64(start), "range_end": _b64(prefix_end(start)),
        })
        members: list[Member] = []
        with _unexpected("members", answer):
            entries = [self._entry(kv) for kv in answer.get("kvs", [])]
        for entry in entries:
            try:
                members.append(Member.from_json(entry.value))
            except ValueError as error:
                log.warning("member record %s skipped: %s", entry.key, error)
        return sorted(members, key=lambda m: m.name)

    async def close(self) -> None:
        await self._client.aclose()

    # -- for EtcdWatch ---------------------------------------------------------------------

    def stream(self, index: int, body: Json) -> AbstractAsyncContextManager[httpx.Response]:
        timeout = httpx.Timeout(self.request_timeout, read=None)  # a watch may be quiet
        return self._client.stream("POST", self.endpoints[index] + "/v3/watch", json=body,
                                   timeout=timeout)

    def change(self, event: Json) -> Change:
        kv: Json = event.get("kv", {})
        entry = self._entry(kv)
        if event.get("type") == "DELETE":
            return Change(ChangeKind.DELETE, entry.key, None, entry.version)
        return Change(ChangeKind.PUT, entry.key, entry.value, entry.version)


class EtcdWatch:
    """One ``/v3/watch`` stream over a prefix; see :class:`~ninelives.cluster.coordinator.Watch`."""

    def __init__(self, coordinator: EtcdCoordinator, prefix: str) -> None:
        self._coordinator = coordinator
        start = coordinator.prefix + prefix
        self._body: Json = {"create_request": {
            "key": _b64(start), "range_end": _b64(prefix_end(start.encode())),
        }}
        self._stream: AbstractAsyncContextManager[httpx.Response] | None = None
        self._lines: AsyncIterator[str] | None = None

    async def __aenter__(self) -> Self:
        failures: list[str] = []
        for index in self._coordinator._order():
            endpoint = self._coordinator.endpoints[index]
            stream = self._coordinator.stream(index, self._body)
            try:
                response = await stream.__aenter__()
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                failures.append(f"{endpoint}: {_describe(error)}")
                continue
            except httpx.HTTPError as error:
                raise CoordinatorUnavailable("watch", f"{endpoint}: {_describe(error)}") \
                    from error
            self._stream = stream
            try:
                await self._created(endpoint, response)
            except BaseException:
                await self.__aexit__(None, None, None)
                raise
            return self
        raise CoordinatorUnavailable("watch", "no etcd endpoint answered: " + "; ".join(failures))

    async def _created(self, endpoint: str, response: httpx.Response) -> None:
        if response.status_code != 200:
            await response.aread()
            raise CoordinatorUnavailable(
                "watch", f"{endpoint}: HTTP {response.status_code} {response.text[:200]}"
            )
        self._lines = response.aiter_lines()
        first = await self._message()
        if not first.get("created", False):
            raise CoordinatorUnavailable("watch", f"{endpoint}: watch not created: {first}")

    async def _message(self) -> Json:
        assert self._lines is not None
        try:
            async for line in self._lines:
                if line.strip():
                    message: Json = json.loads(line)
                    if "error" in message:
                        raise CoordinatorUnavailable("watch", f"etcd said: {message['error']}")
                    result: Json = message.get("result", {})
                    if result.get("canceled", False):
                        reason = result.get("cancel_reason", "no reason given")
                        raise CoordinatorUnavailable("watch", f"etcd cancelled the watch: "
                                                              f"{reason}")
                    return result
        except httpx.HTTPError as error:
            raise CoordinatorUnavailable("watch", f"the watch stream broke: "
                                                  f"{_describe(error)}") from error
        except ValueError as error:
            raise CoordinatorUnavailable("watch", f"unexpected answer: {error}") from error
        raise CoordinatorUnavailable("watch", "etcd ended the watch stream")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stream, self._stream, self._lines = self._stream, None, None
        if stream is not None:
            await stream.__aexit__(None, None, None)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Change]:
        if self._lines is None:
            raise RuntimeError("enter the watch (async with) before iterating it")
        while self._lines is not None:
            result = await self._message()
            for event in result.get("events", []):
                with _unexpected("watch", event):
                    change = self._coordinator.change(event)
                yield change


def _answer(phase: Phase, url: str, response: httpx.Response) -> Json:
    try:
        answer = response.json()
    except ValueError as error:
        raise CoordinatorUnavailable(
            phase, f"{url}: HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
        ) from error
    if not isinstance(answer, dict):
        raise CoordinatorUnavailable(phase, f"{url}: expected a JSON object, got {answer!r}")
    if response.status_code != 200 or "error" in answer:
        raise EtcdError(int(answer.get("code", 0)), str(answer.get("message") or
                                                        answer.get("error") or answer))
    return answer


@contextmanager
def _unexpected(phase: Phase, answer: object) -> Iterator[None]:
    """An answer without the fields the gateway always sends is the store's fault."""
    try:
        yield
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as error:
        raise CoordinatorUnavailable(
            phase, f"unexpected answer from etcd ({error!r}): {str(answer)[:200]}"
        ) from error


def _describe(error: httpx.HTTPError) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text
