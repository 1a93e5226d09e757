"""A/B assignment by a stable hash: the same key lands on the same variant on every replica.

bucket = blake2b(salt + key) mod 10000. Variants own cumulative bucket ranges in a fixed order
(the order of SERVING_VARIANTS), so moving weight between two neighbouring variants moves only
the keys in the range that changes hands.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

BUCKETS = 10_000


def bucket_of(salt: str, key: str) -> int:
    """The key's bucket in [0, BUCKETS): stable across processes, unlike Python's hash()."""
    digest = hashlib.blake2b((salt + key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class Router:
    """Cumulative bucket ranges over variants in a fixed order."""

    salt: str
    order: tuple[str, ...]  # every variant, in configuration order
    bounds: tuple[int, ...]  # exclusive upper bucket bound of each variant in `order`

    @classmethod
    def from_weights(cls, salt: str, order: Sequence[str], weights: dict[str, float]) -> Router:
        """Weights per variant (missing = 0) -> ranges; bounds are rounded cumulative shares."""
        bounds, total = [], 0.0
        for name in order:
            total += weights.get(name, 0.0)
            bounds.append(round(total * BUCKETS))
        if bounds:
            bounds[-1] = BUCKETS  # rounding never leaves buckets unowned
        return cls(salt=salt, order=tuple(order), bounds=tuple(bounds))

    def weights(self) -> dict[str, float]:
        lows = (0, *self.bounds[:-1])
        return {n: (hi - lo) / BUCKETS for n, lo, hi in zip(self.order, lows, self.bounds)}

    def assign(self, key: str) -> str:
        """The variant whose bucket range holds the key."""
        return self.order[bisect.bisect_right(self.bounds, bucket_of(self.salt, key))]
