"""Route 53's health check of the region (handler ``runtime.handlers.health_handler.handler``).

``GET /health/<key>`` on the HTTP API, routed only with the global endpoint and
without the authorizer (infra/global_endpoint.py): 200
``{"status": "ok", "region"}``, counted as ``HealthChecks``.

What "healthy" means: API Gateway's HTTP API in this region routed the
request and Lambda ran a function here, with the app's code and dependencies
layer loaded (this module imports Powertools from it). Nothing else: no table,
bus or secret is read, so a slow or throttled DynamoDB does not move every
client to another region (the alarms report those; docs/operations.md).

Why a function of its own, with its own reserved concurrency
(infra/functions.py): HttpHandler's executions are capped and long polls hold
them for up to 20 s, so a flood of long polls used to make the health check
queue behind them and fail, and Route 53 moved the region's clients away from
a region that was working (a self-inflicted failover).

Every event gets the same answer: the route is the function's only trigger.
Nothing is logged for a passing check: Route 53's checkers call every few seconds.
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.platform.observability import count, metrics

__all__ = ["handler"]


@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A metric of its own (an empty metric set would log a warning per check).
    count("HealthChecks")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "cache-control": "no-store"},
        "body": json.dumps({"status": "ok", "region": runtime_settings.get_settings().region}),
        "isBase64Encoded": False,
    }


init_phase.end()
