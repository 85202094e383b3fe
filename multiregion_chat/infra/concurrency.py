"""What one stage takes from a region's Lambda concurrency, and whether it fits.

Lambda lets a function reserve concurrency only while the account's
unreserved concurrency in the region stays at or above a minimum: 100 in an
account at the default quota of 1,000, the whole quota in a new account whose
quota is still 10 or 50 (the deploy then fails with "decreases account's
UnreservedConcurrentExecution below its minimum value of [10]"). The stacks
reserve HttpHandler's ``httpReservedConcurrency`` and, with the global
endpoint, HealthHandler's 5.

Both ``ChatConfig`` (what one stage can never fit in the default quota) and
``python -m tools.preflight`` (what fits in the account as it is) use this
module, so they count the same reservations.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ACCOUNT_CONCURRENCY",
    "HEALTH_HANDLER_RESERVED_CONCURRENCY",
    "MIN_UNRESERVED_CONCURRENCY",
    "default_quota_problem",
    "fanout_workers_limit",
    "minimum_unreserved",
    "reserved_concurrency",
]

# Lambda's default concurrent executions per account and region.
DEFAULT_ACCOUNT_CONCURRENCY = 1000
# What Lambda keeps unreserved in an account at (or above) the default quota.
MIN_UNRESERVED_CONCURRENCY = 100
# HealthHandler's reservation (infra/functions.py; docs/deploying.md says why).
HEALTH_HANDLER_RESERVED_CONCURRENCY = 5


def minimum_unreserved(account_concurrency: int) -> int:
    """The unreserved concurrency Lambda insists on for an account quota of ``account_concurrency``.

    100, or the whole quota below 100 (accounts at 10 or 50 can reserve nothing).
    """
    return min(MIN_UNRESERVED_CONCURRENCY, account_concurrency)


def reserved_concurrency(http_reserved: int, *, global_endpoint: bool) -> dict[str, int]:
    """Function name -> ReservedConcurrentExecutions one stage declares in each region."""
    reserved = {"HttpHandler": http_reserved}
    if global_endpoint:
        reserved["HealthHandler"] = HEALTH_HANDLER_RESERVED_CONCURRENCY
    return reserved


def fanout_workers_limit(http_reserved: int, *, global_endpoint: bool) -> int:
    """The most FanoutWorkers that fit the default quota beside these reservations."""
    reserved = sum(reserved_concurrency(http_reserved, global_endpoint=global_endpoint).values())
    return DEFAULT_ACCOUNT_CONCURRENCY - reserved - MIN_UNRESERVED_CONCURRENCY


def default_quota_problem(
    http_reserved: int, *, global_endpoint: bool, fanout_max_workers: int
) -> str | None:
    """Why this stage cannot run as configured in the default quota (None: it can).

    The reservations come out of the region's 1,000; FanoutWorkers (up to
    ``fanout_max_workers`` at once) draw from what is left, and at least
    ``MIN_UNRESERVED_CONCURRENCY`` must stay for every other function (the
    WebSocket handlers and the authorizer), or a big room's fan-out throttles
    every connect and frame of the region.
    """
    reserved = sum(reserved_concurrency(http_reserved, global_endpoint=global_endpoint).values())
    needed = reserved + fanout_max_workers + MIN_UNRESERVED_CONCURRENCY
    if needed <= DEFAULT_ACCOUNT_CONCURRENCY:
        return None
    return (
        f"needs {needed:,} concurrent executions per region (reserved {reserved:,} + "
        f"{fanout_max_workers:,} FanoutWorkers + {MIN_UNRESERVED_CONCURRENCY} for the other "
        f"functions), above Lambda's default quota of {DEFAULT_ACCOUNT_CONCURRENCY:,}"
    )
