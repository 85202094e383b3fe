"""A typed client of the server API (infra/server_api.py) for a team's backends.

Requests are signed with SigV4 for ``execute-api`` by botocore (the routes are
IAM-authorized), with the credentials botocore finds the usual way (role,
environment, profile) unless given. Standard library HTTP; botocore only signs
(``pip install 'multiregion-chat[server-api]'``).

    api = ServerApi("https://abc123.execute-api.eu-west-1.amazonaws.com/", region="eu-west-1")
    message_id = api.publish("lobby", {"text": "Maintenance at 22:00"}, sender="Announcements")
    api.disconnect("mallory")  # every connection of the user, in every region

The URL is a region's ``HttpUrl`` stack output; the role needs
``ChatDeployment.grant_publish`` / ``grant_disconnect`` there.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session

__all__ = ["ServerApi", "ServerApiError"]

SERVICE = "execute-api"


class ServerApiError(Exception):
    """The server API refused the request (``status``; ``code`` as in docs/protocol.md)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class ServerApi:
    """One region's server API."""

    def __init__(
        self,
        url: str,
        *,
        region: str,
        credentials: Credentials | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.base_url = url.rstrip("/")
        self.region = region
        self.timeout_seconds = timeout_seconds
        found = credentials or Session().get_credentials()
        if found is None:
            raise ValueError("no AWS credentials found to sign the server API requests")
        self._credentials = found

    def publish(self, room: str, body: Any, *, sender: str) -> str:
        """Publish ``body`` (any JSON value) into ``room`` as the system sender ``sender``.

        Returns the message id. Every member of the room, in every region,
        receives it like any message; it is in history like any message.
        """
        reply = self._post(f"/server/rooms/{quote(room, safe='')}/messages", {
            "body": body,
            "sender": sender,
        })  # fmt: skip
        return str(reply["id"])

    def disconnect(self, user_id: str) -> None:
        """Close every connection of ``user_id`` in every region (within seconds, async)."""
        self._post(f"/server/users/{quote(user_id, safe='')}/disconnect", {})

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        request = AWSRequest(
            method="POST",
            url=self.base_url + path,
            data=data,
            headers={"Content-Type": "application/json"},
        )
        SigV4Auth(self._credentials.get_frozen_credentials(), SERVICE, self.region).add_auth(
            request
        )
        prepared = urllib.request.Request(
            self.base_url + path, data=data, headers=dict(request.headers.items()), method="POST"
        )
        try:
            with urllib.request.urlopen(prepared, timeout=self.timeout_seconds) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise _error(error.code, error.read()) from None
        return answer if isinstance(answer, dict) else {}


def _error(status: int, raw: bytes) -> ServerApiError:
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    # API Gateway's own refusals (a missing or wrong signature) carry only "message".
    code = str(answer.get("code") or ("forbidden" if status == 403 else "error"))
    return ServerApiError(status, code, str(answer.get("message") or raw[:200]))
