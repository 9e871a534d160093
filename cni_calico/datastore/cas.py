"""Compare-and-swap, retried: every read-modify-write of the project goes through here."""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from ..errors import TRY_AGAIN_LATER, CniError
from .base import Datastore

T = TypeVar("T")


class Conflict:
    """What an attempt returns when its conditional write lost a race: read again and retry."""

    def __repr__(self) -> str:
        return "CONFLICT"


CONFLICT = Conflict()
MAX_ATTEMPTS = 100


def retry_on_conflict(attempt: Callable[[], T | Conflict], what: str, attempts: int = MAX_ATTEMPTS) -> T:
    """Run `attempt` (a read, then a write conditional on what was read) until it does not lose a
    race, at most `attempts` times; only conflicts retry, any exception goes through. Giving up is
    code 11 (contention: the caller may retry later), never a silent return."""
    for n in range(attempts):
        result = attempt()
        if not isinstance(result, Conflict):
            return result
        time.sleep(random.uniform(0, 0.002 * min(n + 1, 10)))  # jitter breaks lock-step retries
    raise CniError(TRY_AGAIN_LATER, f"{what}: gave up after {attempts} conflicting writes",
                   "the datastore is under heavy contention; retry")


def read_modify_write(ds: Datastore, key: str, change: Callable[[str | None], str | None], what: str,
                      attempts: int = MAX_ATTEMPTS) -> str | None:
    """Set `key` to `change(current value or None)` at the revision read (None: delete it; the same
    value: no write), retrying on conflict. Returns the value written (or kept)."""

    def attempt() -> str | Conflict | None:
        kv = ds.get(key)
        current = kv.value if kv else None
        wanted = change(current)
        if wanted == current:
            return wanted
        expect = {key: kv.mod_revision if kv else 0}
        written = ds.txn(expect, {key: wanted}) if wanted is not None else ds.txn(expect, delete=[key])
        return wanted if written else CONFLICT

    return retry_on_conflict(attempt, what, attempts)
