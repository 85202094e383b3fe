"""An API Gateway HTTP API (the fallback API), locally: routes, Lambda proxy, Lambda authorizer.

Route keys ``METHOD /path/{param}`` (``ANY``, ``{proxy+}`` and ``$default`` included) choose the
integration; the event is the payload format the integration asks for (2.0 or 1.0); a REQUEST
authorizer (simple or IAM-policy answers) runs first, and an ``AWS_IAM`` route wants a SigV4
signature for ``execute-api`` in the region (:func:`sigv4_identity`). A region without an HTTP
API answers 404 here.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from sandbox.function_pool import InvokeResult
from sandbox.resolver import ACCOUNT_ID, PARTITION, URL_SUFFIX
from sandbox.template_model import ApiSpec, AuthorizerSpec, RouteSpec
from sandbox.websocket_api import HandshakeRefused, authorizer_context, request_id

InvokeFn = Callable[..., Awaitable[InvokeResult]]
INTEGRATION_TIMEOUT = 30.0


@dataclass(frozen=True)
class _CompiledRoute:
    method: str
    pattern: re.Pattern[str] | None
    literal_segments: int
    route: RouteSpec


# What an AWS_IAM route requires: a SigV4 signature for execute-api in this region.
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9]+)/(?P<date>[0-9]{8})/"
    r"(?P<region>[a-z0-9-]+)/execute-api/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?"
    r"Signature=[0-9a-f]{64}"
)


def sigv4_identity(authorization: str, region: str) -> dict[str, Any] | None:
    """The ``authorizer.iam`` context of a SigV4-signed request, None if it is not one.

    The sandbox has no IAM: it checks that the request is signed for
    ``execute-api`` in this region (what a caller gets wrong when it signs for
    the wrong service or region), not the signature itself, which would need
    the caller's secret key.
    """
    found = _SIGV4.fullmatch(authorization.strip())
    if found is None or found.group("region") != region:
        return None
    return {
        "accessKey": found.group("key"),
        "accountId": ACCOUNT_ID,
        "callerId": found.group("key"),
        "principalOrgId": None,
        "userArn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:user/sandbox",
        "userId": found.group("key"),
    }


def _compile(route: RouteSpec) -> _CompiledRoute:
    if route.route_key == "$default":
        return _CompiledRoute("ANY", None, -1, route)
    method, _, path = route.route_key.partition(" ")
    regex = ""
    literal = 0
    for segment in [s for s in path.split("/") if s]:
        if segment.startswith("{") and segment.endswith("+}"):
            regex += f"/(?P<{segment[1:-2]}>.+)"
        elif segment.startswith("{") and segment.endswith("}"):
            regex += f"/(?P<{segment[1:-1]}>[^/]+)"
        else:
            regex += "/" + re.escape(segment)
            literal += 1
    return _CompiledRoute(method.upper(), re.compile(f"^{regex or '/'}/?$"), literal, route)


class HttpApi:
    def __init__(self, region: str, api: ApiSpec | None, invoke: InvokeFn) -> None:
        self.region = region
        self.api = api
        self._invoke = invoke
        self.counters: Counter[str] = Counter()
        routes = [_compile(r) for r in api.routes.values()] if api else []
        self._routes = sorted(routes, key=lambda r: -r.literal_segments)
        self.domain_name = f"{api.api_id}.execute-api.{region}.{URL_SUFFIX}" if api else ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _match(self, method: str, path: str) -> tuple[RouteSpec, dict[str, str]] | None:
        for compiled in self._routes:
            if compiled.method not in ("ANY", method):
                continue
            if compiled.pattern is None:
                return compiled.route, {}
            found = compiled.pattern.match(path)
            if found:
                return compiled.route, found.groupdict()
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.api is None:
            return web.json_response({"message": "Not Found"}, status=404)
        cors = self.api.cors
        origin = request.headers.get("Origin")
        if (
            cors
            and origin
            and request.method == "OPTIONS"
            and ("Access-Control-Request-Method" in request.headers)
        ):
            return self._preflight(cors, origin)
        response = await self._handle(request)
        if cors and origin:
            _allow_origin(response, cors, origin)
        return response

    @staticmethod
    def _preflight(cors: dict[str, Any], origin: str) -> web.Response:
        """API Gateway answers CORS preflight itself when the API has a CorsConfiguration."""
        response = web.Response(status=204)
        if not _allow_origin(response, cors, origin):
            return response
        for header, key in (
            ("Access-Control-Allow-Methods", "AllowMethods"),
            ("Access-Control-Allow-Headers", "AllowHeaders"),
        ):
            if cors.get(key):
                response.headers[header] = ",".join(str(v) for v in cors[key])
        if cors.get("MaxAge") is not None:
            response.headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.api is not None
        path = request.path
        stage = self.api.stage
        if stage != "$default":
            if not path.startswith(f"/{stage}"):
                return web.json_response({"message": "Not Found"}, status=404)
            path = path[len(stage) + 1 :] or "/"
        matched = self._match(request.method, path)
        if matched is None:
            self.counters["not_found"] += 1
            return web.json_response({"message": "Not Found"}, status=404)
        route, parameters = matched
        body = await request.read()
        event = self._event(request, route, path, parameters, body)
        if route.iam:
            identity = sigv4_identity(request.headers.get("Authorization", ""), self.region)
            if identity is None:
                self.counters["unauthorized"] += 1
                return web.json_response({"message": "Forbidden"}, status=403)
            event["requestContext"]["authorizer"] = {"iam": identity}
        if route.authorizer is not None and route.authorizer.function:
            try:
                event["requestContext"]["authorizer"] = await self._authorize(
                    route.authorizer, event
                )
            except HandshakeRefused as refused:
                self.counters["unauthorized"] += 1
                return web.json_response({"message": refused.message}, status=refused.status)
        self.counters[f"route:{route.route_key}"] += 1
        result = await self._invoke(route.function, event, INTEGRATION_TIMEOUT)
        if not result.ok:
            status = 503 if result.error_type == "Sandbox.Timeout" else 500
            return web.json_response({"message": "Internal Server Error"}, status=status)
        return self._response(result.result, route.payload_version)

    def _event(
        self,
        request: web.Request,
        route: RouteSpec,
        path: str,
        parameters: dict[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        assert self.api is not None
        now = time.time()
        source_ip = request.remote or "127.0.0.1"
        text_body: str | None
        encoded = False
        try:
            text_body = body.decode("utf-8") if body else None
        except UnicodeDecodeError:
            text_body, encoded = base64.b64encode(body).decode(), True
        query = parse_qsl(request.query_string, keep_blank_values=True)
        multi: dict[str, list[str]] = {}
        for key, value in query:
            multi.setdefault(key, []).append(value)
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            lowered = name.lower()
            headers[lowered] = f"{headers[lowered]},{value}" if lowered in headers else value
        headers["host"] = self.domain_name
        headers["x-forwarded-for"] = source_ip
        if route.payload_version == "1.0":
            return {
                "version": "1.0",
                "resource": path,
                "path": request.path,
                "httpMethod": request.method,
                "headers": dict(request.headers),
                "multiValueHeaders": {k: [v] for k, v in request.headers.items()},
                "queryStringParameters": {k: v[-1] for k, v in multi.items()} or None,
                "multiValueQueryStringParameters": multi or None,
                "pathParameters": parameters or None,
                "stageVariables": None,
                "requestContext": {
                    "accountId": ACCOUNT_ID,
                    "apiId": self.api.api_id,
                    "domainName": self.domain_name,
                    "httpMethod": request.method,
                    "identity": {
                        "sourceIp": source_ip,
                        "userAgent": request.headers.get("User-Agent", ""),
                    },
                    "path": request.path,
                    "requestId": request_id(),
                    "requestTimeEpoch": int(now * 1000),
                    "resourcePath": route.route_key,
                    "stage": self.api.stage,
                },
                "body": text_body,
                "isBase64Encoded": encoded,
            }
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": request.path,
            "rawQueryString": request.query_string,
            "headers": headers,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": self.api.api_id,
                "domainName": self.domain_name,
                "domainPrefix": self.api.api_id,
                "http": {
                    "method": request.method,
                    "path": request.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": request_id(),
                "routeKey": route.route_key,
                "stage": self.api.stage,
                "time": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": encoded,
        }
        if request.cookies:
            event["cookies"] = [f"{k}={v}" for k, v in request.cookies.items()]
        if multi:
            event["queryStringParameters"] = {k: ",".join(v) for k, v in multi.items()}
        if parameters:
            event["pathParameters"] = parameters
        if text_body is not None:
            event["body"] = text_body
        return event

    async def _authorize(self, authorizer: AuthorizerSpec, event: dict[str, Any]) -> Any:
        assert self.api is not None
        identity: list[str] = []
        for source in authorizer.identity_sources:
            value = _identity(source, event)
            if not value:
                raise HandshakeRefused(401, "Unauthorized")
            identity.append(value)
        method = event["requestContext"].get("http", {}).get("method", "")
        route_arn = (
            f"arn:{PARTITION}:execute-api:{self.region}:{ACCOUNT_ID}:{self.api.api_id}/"
            f"{self.api.stage}/{method}{event.get('rawPath', '')}"
        )
        auth_event = dict(event, type="REQUEST", routeArn=route_arn, identitySource=identity)
        result = await self._invoke(authorizer.function, auth_event, INTEGRATION_TIMEOUT)
        if not result.ok:
            if (result.error_message or "").strip() == "Unauthorized":
                raise HandshakeRefused(401, "Unauthorized")
            raise HandshakeRefused(500, "Internal Server Error")
        answer = result.result
        if authorizer.simple_responses:
            if not isinstance(answer, dict) or answer.get("isAuthorized") is not True:
                raise HandshakeRefused(403, "Forbidden")
            return {"lambda": answer.get("context") or {}}
        context = authorizer_context(answer, route_arn)
        principal = context.pop("principalId", "")
        context.pop("integrationLatency", None)
        return {"lambda": context, "principalId": principal}

    @staticmethod
    def _response(result: Any, version: str) -> web.Response:
        if version == "2.0" and not (isinstance(result, dict) and "statusCode" in result):
            # Payload 2.0 without a statusCode: API Gateway answers 200 with the value as JSON.
            text = result if isinstance(result, str) else json.dumps(result)
            return web.Response(status=200, text=text, content_type="application/json")
        if not isinstance(result, dict):
            return web.json_response({"message": "Internal Server Error"}, status=502)
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        response = web.Response(status=int(result.get("statusCode", 200)), body=data)
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = str(value)
        for name, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                response.headers.add(name, str(value))
        for cookie in result.get("cookies") or []:
            response.headers.add("Set-Cookie", cookie)
        if "Content-Type" not in response.headers:
            response.headers["Content-Type"] = "application/json"  # API Gateway's default
        return response


def _allow_origin(response: web.StreamResponse, cors: dict[str, Any], origin: str) -> bool:
    allowed = [str(o) for o in cors.get("AllowOrigins") or []]
    if "*" not in allowed and origin not in allowed:
        return False
    response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
    if cors.get("AllowCredentials"):
        response.headers["Access-Control-Allow-Credentials"] = "true"
    if cors.get("ExposeHeaders"):
        response.headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    return True


def _identity(source: str, event: dict[str, Any]) -> str | None:
    lowered = source.lower()
    if lowered.startswith("$request.header."):
        return (event.get("headers") or {}).get(lowered[len("$request.header.") :])
    if lowered.startswith("$request.querystring."):
        return (event.get("queryStringParameters") or {}).get(
            source[len("$request.querystring.") :]
        )
    return "present"
