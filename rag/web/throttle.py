"""A brake on guessing: failed logins and wrong API keys make the next try wait.

After ``RAG_THROTTLE_AFTER`` failures each further try waits 1 s, then 2, 4, ... up to
``RAG_THROTTLE_MAX_WAIT``; a try during the wait is refused unheard (429 with Retry-After)
and does not count. Failures are counted per (account, address), so a guesser never locks
the real user out from elsewhere, and per address (four times as many allowed, for a
network behind one address), so one guesser cannot spray many accounts. The counts live
in this process: several app processes each keep their own, and a restart forgets them.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from rag.config import Settings

MOST_KEYS = 100_000  # bounded memory however many addresses and names a guesser uses
ADDRESS_SHARE = 4  # an address may fail this many times more often than one account there


@dataclass
class _Count:
    failures: int
    last: float


class Throttle:
    """Failures per key, and how long the key must wait before its next try."""

    def __init__(
        self, free: int, longest: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.free, self.longest, self.clock = free, longest, clock
        self._counts: OrderedDict[Hashable, _Count] = OrderedDict()
        self._lock = threading.Lock()

    def _delay(self, failures: int) -> float:
        over = failures - self.free
        return 0.0 if over < 0 else min(self.longest, 2.0 ** min(over, 30))

    def _current(self, key: Hashable, now: float) -> _Count | None:
        count = self._counts.get(key)
        # Quiet for twice the longest wait: forgotten, so old typos never add up.
        if count is not None and now - count.last > 2 * self.longest + self._delay(count.failures):
            del self._counts[key]
            return None
        return count

    def wait(self, key: Hashable) -> float:
        """Seconds until ``key`` may try again; 0 means now."""
        with self._lock:
            now = self.clock()
            count = self._current(key, now)
            return (
                0.0 if count is None else max(0.0, count.last + self._delay(count.failures) - now)
            )

    def failed(self, key: Hashable) -> None:
        with self._lock:
            now = self.clock()
            count = self._current(key, now) or _Count(0, now)
            count.failures, count.last = count.failures + 1, now
            self._counts[key] = count
            self._counts.move_to_end(key)
            while len(self._counts) > MOST_KEYS:
                self._counts.popitem(last=False)  # the longest quiet

    def forgive(self, key: Hashable, failures: int | None = None) -> None:
        """Takes back ``failures`` (all when None) of the key's count."""
        with self._lock:
            count = self._counts.get(key)
            if count is None:
                return
            count.failures -= count.failures if failures is None else failures
            if count.failures <= 0:
                del self._counts[key]


def address_key(address: str) -> str:
    """One IPv6 user holds a whole /64: counted as one address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Guesses:
    """Tries of a secret (a password, an API key) per account and address.

    ``begin`` counts a try as failed before it is checked, so that many tries sent at once
    cannot all slip in before the first failure is known; ``succeeded`` takes it back."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        free, longest = settings.throttle_after, settings.throttle_max_wait
        self.pairs = Throttle(free, longest, clock)
        self.addresses = Throttle(free * ADDRESS_SHARE, longest, clock)

    def begin(self, address: str, account: str = "") -> float:
        """0 when the try may go ahead (and is counted); else the seconds to wait."""
        pair, where = (account, address_key(address)), address_key(address)
        wait = max(self.pairs.wait(pair), self.addresses.wait(where))
        if wait == 0:
            self.pairs.failed(pair)
            self.addresses.failed(where)
        return wait

    def succeeded(self, address: str, account: str = "") -> None:
        self.pairs.forgive((account, address_key(address)))
        self.addresses.forgive(address_key(address), 1)


def retry_after(wait: float) -> str:
    """The Retry-After header: whole seconds, at least one."""
    return str(max(1, math.ceil(wait)))
