"""moto's services called without Flask: the handler moto itself registers for ``POST /``.

Every request the handlers make to DynamoDB, SQS (JSON protocol), Secrets Manager and SSM is a
``POST /`` whose service the SigV4 credential scope names. For those, this WSGI app calls the
response class moto registers for that URL (``DynamoHandler.dispatch``, ...) with moto's own
request type, as moto's Flask view does, minus Flask's request context, URL map and CORS
(most of moto's per-request time here). Anything else (another path, method or service) goes
to moto's full app unchanged.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

from sandbox.calls import service_of

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
Handler = Callable[[Any, str, dict[str, str]], Any]

DIRECT_SERVICES = frozenset({"dynamodb", "sqs", "secretsmanager", "ssm"})
STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


def _root_handler(service: str) -> Handler | None:
    """The handler moto registers for the path ``/`` of ``service``."""
    from moto import backends
    from moto.core import DEFAULT_ACCOUNT_ID

    # As moto's create_backend_app picks the instance it reads the URLs from.
    regions: Any = backends.get_backend(service)[DEFAULT_ACCOUNT_ID]  # type: ignore[call-overload]
    backend = regions["us-east-1"] if "us-east-1" in regions else regions["aws"]
    for pattern, handler in backend.url_paths.items():  # path patterns: "/", "/$", ...
        if re.fullmatch(pattern, "/") or re.match(pattern, "/"):
            return handler
    return None


class DirectDispatch:
    def __init__(self, fallback: WsgiApp) -> None:
        self.fallback = fallback
        self._handlers: dict[str, Handler | None] = {}
        self._lock = threading.Lock()

    def _handler(self, service: str) -> Handler | None:
        if service not in self._handlers:
            with self._lock:
                if service not in self._handlers:
                    self._handlers[service] = _root_handler(service)
        return self._handlers[service]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        service = service_of(environ.get("HTTP_AUTHORIZATION", ""))
        if (
            service not in DIRECT_SERVICES
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("PATH_INFO") != "/"
        ):
            return self.fallback(environ, start_response)
        handler = self._handler(service)
        if handler is None:
            return self.fallback(environ, start_response)
        from moto.moto_server.werkzeug_app import BackendRequest

        request = BackendRequest(environ)
        try:
            result = handler(request, request.raw_url, dict(request.headers))
        except ClientError as exc:  # as moto's Flask view answers it
            result = 400, {}, exc.response["Error"]["Message"]
        status, headers, body = result if len(result) == 3 else (200, {}, result)
        payload = body.encode() if isinstance(body, str) else bytes(body or b"")
        header_list = [(str(k), str(v)) for k, v in headers.items() if k.lower() != "status"]
        if not any(k.lower() == "content-type" for k, _ in header_list):
            header_list.append(("Content-Type", "text/html; charset=utf-8"))  # Flask's default
        code = int(status)
        start_response(f"{code} {STATUS_TEXT.get(code, 'Status')}", header_list)
        return [payload]
