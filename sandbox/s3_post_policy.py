"""S3's check of a browser-based POST upload against its policy (the sandbox and the tests).

moto stores a POSTed object without reading the policy (moto 5.2: ``_bucket_response_post``
never decodes it), so the sandbox's moto process (:class:`PostPolicyCheck`) and the unit
tests apply the rules S3 documents first
("Creating a POST policy", Amazon S3 API reference): the policy has not expired, every
condition holds (exact match ``{"field": value}`` / ``["eq", "$field", value]``,
``["starts-with", "$field", prefix]``, ``["content-length-range", min, max]`` on the file),
and every form field but ``policy``, the signature, ``file`` and ``x-ignore-*`` is named by a
condition. Field names compare case-insensitively, values exactly. The signature itself is
botocore's and not checked here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape

__all__ = ["PolicyCheck", "PolicyRefusal", "check_post", "refusal_response"]

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

# Never named by a condition: the policy, its signature (SigV4 or SigV2 with its key), the file.
_UNCHECKED = {"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"}


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


def refusal_response(refusal: PolicyRefusal, start_response: Any) -> list[bytes]:
    code, message = refusal.code, str(refusal).split(": ", 1)[1]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    ).encode()
    reason = "Forbidden" if refusal.status == 403 else "Bad Request"
    start_response(f"{refusal.status} {reason}", [("Content-Type", "application/xml")])
    return [body]


class PolicyCheck:
    """WSGI middleware in front of moto: a browser-based POST upload (``POST /<bucket>``,
    ``multipart/form-data``, path-style as the functions presign against 127.0.0.1) is
    checked against its policy as S3 checks it; moto stores what passes. Everything else
    goes to moto unchanged."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        bucket = path.strip("/")
        if (
            environ.get("REQUEST_METHOD") != "POST"
            or "HTTP_AUTHORIZATION" in environ
            or not str(environ.get("CONTENT_TYPE", "")).startswith("multipart/form-data")
            or not bucket
            or "/" in bucket
        ):
            return self.app(environ, start_response)
        from werkzeug.formparser import parse_form_data

        body = environ["wsgi.input"].read()
        parsing = {**environ, "wsgi.input": io.BytesIO(body)}
        _, form, files = parse_form_data(parsing)
        upload = files.get("file")
        fields = {name: value for name, value in form.items()}
        try:
            if "policy" not in {name.lower() for name in fields} or upload is None:
                raise PolicyRefusal(
                    400, "InvalidArgument", "a POST upload needs a policy and a file"
                )
            check_post(fields, bucket, upload.read())
        except PolicyRefusal as refusal:
            return refusal_response(refusal, start_response)
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            malformed = PolicyRefusal(400, "InvalidPolicyDocument", f"malformed policy: {error}")
            return refusal_response(malformed, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)
