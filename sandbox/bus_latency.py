"""EventBridge's delivery latency, emulated (``--bus-latency-ms P50,P99``).

Each rule delivery to a function and each forward to another region's bus waits a delay drawn
from a log-normal distribution with the given median and 99th percentile:
``mu = ln(p50)``, ``sigma = (ln(p99) - ln(p50)) / z99`` with ``z99`` = 2.3263, the standard
normal's 99th percentile. A published measurement of EventBridge -> Lambda in one region gives
p50 148 ms, p99 387 ms (docs/performance.md): ``--bus-latency-ms 148,387``. Off by default.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

Z99 = 2.3263  # the standard normal distribution's 99th percentile


@dataclass(frozen=True)
class BusLatency:
    p50_ms: float
    p99_ms: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.p50_ms) and math.isfinite(self.p99_ms)):
            raise ValueError("p50 and p99 must be finite numbers")
        if not 0 < self.p50_ms <= self.p99_ms:
            raise ValueError(f"need 0 < p50 <= p99, got {self.p50_ms:g},{self.p99_ms:g}")

    @classmethod
    def parse(cls, text: str) -> BusLatency:
        """``"148,387"`` (milliseconds) -> BusLatency(148, 387); ValueError with the reason."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 2:
            raise ValueError(f"expected P50,P99 in milliseconds, e.g. 148,387; got {text!r}")
        try:
            p50, p99 = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"P50 and P99 must be numbers; got {text!r}") from None
        return cls(p50, p99)

    @property
    def mu(self) -> float:
        return math.log(self.p50_ms)

    @property
    def sigma(self) -> float:
        return (math.log(self.p99_ms) - math.log(self.p50_ms)) / Z99

    def draw_seconds(self, rng: random.Random) -> float:
        """One delay, in seconds."""
        return rng.lognormvariate(self.mu, self.sigma) / 1000.0
