"""clients.server_api_client: SigV4-signed requests, answers and errors, against a local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from multiregion_chat.clients.server_api_client import ServerApi, ServerApiError

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session")


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            recorder.requests.append(
                {"path": self.path, "headers": dict(self.headers.items()), "body": body}
            )
            status, answer = recorder.answers.pop(0) if recorder.answers else (202, {})
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/", recorder
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


def _expected_signature(url: str, recorded: dict[str, Any]) -> str:
    headers = recorded["headers"]
    request = AWSRequest(
        method="POST",
        url=url.rstrip("/") + recorded["path"],
        data=recorded["body"],
        headers={"Content-Type": headers["Content-Type"]},
    )
    request.headers["X-Amz-Date"] = headers["X-Amz-Date"]
    request.headers["X-Amz-Security-Token"] = headers["X-Amz-Security-Token"]
    request.context["timestamp"] = headers["X-Amz-Date"]
    auth = SigV4Auth(CREDENTIALS.get_frozen_credentials(), "execute-api", "eu-west-1")
    canonical = auth.canonical_request(request)
    return auth.signature(auth.string_to_sign(request, canonical), request)


def test_publish_is_signed_for_execute_api(server: tuple[str, Recorder]) -> None:
    url, recorder = server
    recorder.answers.append((202, {"id": "01JABCDEFGHJKMNPQRSTVWXYZ0"}))
    api = ServerApi(url, region="eu-west-1", credentials=CREDENTIALS)
    assert api.publish("team:a", {"text": "hi"}, sender="Announcements") == (
        "01JABCDEFGHJKMNPQRSTVWXYZ0"
    )
    (recorded,) = recorder.requests
    assert recorded["path"] == "/server/rooms/team%3Aa/messages"
    assert json.loads(recorded["body"]) == {"body": {"text": "hi"}, "sender": "Announcements"}
    authorization = recorded["headers"]["Authorization"]
    date = recorded["headers"]["X-Amz-Date"][:8]
    assert authorization.startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{date}/eu-west-1/execute-api/aws4_request"
    )
    assert authorization.endswith(f"Signature={_expected_signature(url, recorded)}")


def test_disconnect_quotes_the_user_id(server: tuple[str, Recorder]) -> None:
    url, recorder = server
    ServerApi(url, region="eu-west-1", credentials=CREDENTIALS).disconnect("mallory/1")
    (recorded,) = recorder.requests
    assert recorded["path"] == "/server/users/mallory%2F1/disconnect"
    assert json.loads(recorded["body"]) == {}


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [
        (400, {"code": "bad_request", "message": "'sender' must be ..."}, "bad_request"),
        (413, {"code": "too_large", "message": "too big"}, "too_large"),
        # API Gateway's own refusal of a bad signature: no code of ours.
        (403, {"message": "The request signature we calculated does not match"}, "forbidden"),
    ],
)
def test_errors_carry_status_and_code(
    server: tuple[str, Recorder], status: int, answer: dict[str, Any], code: str
) -> None:
    url, recorder = server
    recorder.answers.append((status, answer))
    api = ServerApi(url, region="eu-west-1", credentials=CREDENTIALS)
    with pytest.raises(ServerApiError) as raised:
        api.publish("lobby", 1, sender="Bot")
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message == answer["message"]
