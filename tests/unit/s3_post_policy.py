"""S3's check of a browser-based POST upload against its policy, for tests.

moto stores a POSTed object without reading the policy (moto 5.2: ``_bucket_response_post``
never decodes it), so a test that wants S3's refusal applies the rules S3 documents first
("Creating a POST policy", Amazon S3 API reference): the policy has not expired, every
condition holds (exact match ``{"field": value}`` / ``["eq", "$field", value]``,
``["starts-with", "$field", prefix]``, ``["content-length-range", min, max]`` on the file),
and every form field but ``policy``, the signature, ``file`` and ``x-ignore-*`` is named by a
condition. Field names compare case-insensitively, values exactly. The signature itself is
botocore's and not checked here.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["PolicyRefusal", "check_post"]

_UNCHECKED = {"policy", "x-amz-signature", "file"}


class PolicyRefusal(Exception):
    """What S3 would answer instead of storing the object (``status``, ``code``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


def _denied(message: str) -> PolicyRefusal:
    return PolicyRefusal(403, "AccessDenied", f"Invalid according to Policy: {message}")


def check_post(
    fields: Mapping[str, str], bucket: str, content: bytes, *, now: dt.datetime | None = None
) -> None:
    """Raise PolicyRefusal when S3 would refuse this POST of ``content`` with ``fields``."""
    form = {name.lower(): value for name, value in fields.items()}
    form["bucket"] = bucket
    policy: dict[str, Any] = json.loads(base64.b64decode(form["policy"]))
    expiration = dt.datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    if (now or dt.datetime.now(dt.UTC)) >= expiration:
        raise _denied("Policy expired.")
    named: set[str] = {"bucket"}
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            condition = ["eq", f"${name}", value]
        operator, *arguments = condition
        if operator == "content-length-range":
            low, high = arguments
            if not low <= len(content) <= high:
                raise PolicyRefusal(
                    400,
                    "EntityTooLarge" if len(content) > high else "EntityTooSmall",
                    f"{len(content)} bytes is outside {low}..{high}",
                )
            continue
        target, expected = arguments
        name = target.lstrip("$").lower()
        named.add(name)
        given = form.get(name)
        if operator == "eq" and given != expected:
            raise _denied(f"Policy Condition failed: {condition}")
        if operator == "starts-with" and not (given or "").startswith(expected):
            raise _denied(f"Policy Condition failed: {condition}")
    for name in form:
        if name not in named and name not in _UNCHECKED and not name.startswith("x-ignore-"):
            raise _denied(f"Extra input fields: {name}")
