"""Attachments: upload slots, real uploads with the presigned POST, the send check, downloads.

Each region's bucket is a moto bucket named as the stacks name it; uploads are real POSTs
(``requests``, intercepted by moto) after S3's policy rules (sandbox/s3_post_policy.py,
since moto does not enforce them).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests

from multiregion_chat.runtime.attachments import transfers
from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.quota import client_budget
from sandbox.s3_post_policy import PolicyRefusal, check_post

PATTERN = "chat-test-files-123456789012-{region}"
HERE, ORIGIN = "us-east-1", "eu-west-1"
MAX_BYTES = 1000


def bucket(region: str) -> str:
    return PATTERN.replace("{region}", region)


@pytest.fixture
def buckets(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ATTACHMENT_BUCKET", bucket(HERE))
    monkeypatch.setenv("ATTACHMENT_BUCKET_PATTERN", PATTERN)
    monkeypatch.setenv("MAX_ATTACHMENT_BYTES", str(MAX_BYTES))
    monkeypatch.setenv("UPLOAD_SLOTS_PER_USER_PER_MINUTE", "3")
    aws_clients.reset()
    boto3.client("s3", region_name=HERE).create_bucket(Bucket=bucket(HERE))
    boto3.client("s3", region_name=ORIGIN).create_bucket(
        Bucket=bucket(ORIGIN), CreateBucketConfiguration={"LocationConstraint": ORIGIN}
    )
    yield


@pytest.fixture
def alice(chat: Any, buckets: None) -> str:
    chat.connect("c-alice", "alice", "Alice")
    assert chat.send("c-alice", {"action": "join", "room": "lobby"})["type"] == "joined"
    return "c-alice"


@pytest.fixture
def bob(chat: Any, buckets: None) -> str:
    chat.connect("c-bob", "bob", "Bob")
    assert chat.send("c-bob", {"action": "join", "room": "lobby"})["type"] == "joined"
    return "c-bob"


def slot(chat: Any, connection: str, **fields: Any) -> dict[str, Any]:
    frame = {"action": "upload", "room": "lobby", "contentType": "text/plain", "size": 5}
    reply = chat.send(connection, {**frame, **fields, "ref": "u1"})
    assert reply["type"] == "upload_slot", reply
    return reply


def upload(reply: dict[str, Any], content: bytes, content_type: str | None = None) -> int:
    """POST ``content`` as a browser would with the slot's form; S3's status code."""
    fields = dict(reply["fields"])
    if content_type is not None:
        fields["Content-Type"] = content_type
    try:
        check_post(fields, bucket(HERE), content)
    except PolicyRefusal as refusal:
        return refusal.status
    response = requests.post(reply["url"], data=fields, files={"file": ("f", content)}, timeout=30)
    return response.status_code


def policy(reply: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(reply["fields"]["policy"]))
    return decoded


def test_a_member_gets_a_slot_for_a_key_the_server_chose(chat: Any, alice: str) -> None:
    reply = slot(chat, alice, key="rooms/lobby/mine")
    assert reply["room"] == "lobby" and reply["ref"] == "u1" and reply["maxBytes"] == MAX_BYTES
    parsed = transfers.AttachmentKey.parse(reply["key"])
    assert parsed is not None
    assert (parsed.room, parsed.region) == ("lobby", HERE)
    assert parsed.uploader == transfers.uploader_tag("alice")
    assert reply["fields"]["key"] == reply["key"]
    conditions = policy(reply)["conditions"]
    assert ["content-length-range", 1, MAX_BYTES] in conditions
    assert {"Content-Type": "text/plain"} in conditions
    assert {"key": reply["key"]} in conditions


def test_the_slot_expires_within_minutes(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)
    for stamp in (policy(reply)["expiration"], reply["expiresAt"]):
        expires = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        left = expires.timestamp() - dt.datetime.now(dt.UTC).timestamp()
        assert 0 < left <= transfers.SLOT_SECONDS + 1


def test_a_non_member_gets_no_slot(chat: Any, buckets: None) -> None:
    chat.connect("c-eve", "eve")
    frame = {"action": "upload", "room": "lobby", "contentType": "text/plain", "size": 5}
    reply = chat.send("c-eve", frame)
    assert (reply["type"], reply["code"]) == ("error", "not_member")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"contentType": "Text/Plain"}, "bad_request"),
        ({"contentType": "text/plain; charset=utf-8"}, "bad_request"),
        ({"size": 0}, "bad_request"),
        ({"size": "5"}, "bad_request"),
        ({"size": True}, "bad_request"),
        ({"name": ""}, "bad_request"),
        ({"size": MAX_BYTES + 1}, "too_large"),
    ],
)
def test_bad_upload_frames_are_refused_and_the_connection_stays(
    chat: Any, alice: str, fields: dict[str, Any], code: str
) -> None:
    frame = {"action": "upload", "room": "lobby", "contentType": "text/plain", "size": 5}
    reply = chat.send(alice, {**frame, **fields, "ref": "r"})
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", code, "r")
    assert chat.send(alice, {"action": "ping"})["type"] == "pong"


def test_slots_per_user_are_budgeted(
    chat: Any, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = client_budget.clock_ms()
    monkeypatch.setattr(client_budget, "clock_ms", lambda: now)
    for _ in range(3):
        slot(chat, alice)
    reply = chat.send(
        alice, {"action": "upload", "room": "lobby", "contentType": "text/plain", "size": 5}
    )
    assert (reply["type"], reply["code"]) == ("error", "rate_limited")
    assert "upload slots" in reply["message"]
    assert 0 < reply["retryAfterMs"] <= 20_000  # one slot refills in 60 s / 3
    monkeypatch.setattr(client_budget, "clock_ms", lambda: now + 20_000)
    slot(chat, alice)


def test_an_upload_within_the_limit_is_stored(chat: Any, alice: str) -> None:
    reply = slot(chat, alice, name="notes ä.txt")
    assert upload(reply, b"hello") == 204
    head = boto3.client("s3", region_name=HERE).head_object(Bucket=bucket(HERE), Key=reply["key"])
    assert (head["ContentLength"], head["ContentType"]) == (5, "text/plain")
    assert head["Metadata"]["name"] == "notes%20%C3%A4.txt"


def test_s3_refuses_an_upload_over_the_limit(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)
    assert upload(reply, b"x" * (MAX_BYTES + 1)) == 400
    assert upload(reply, b"") == 400
    assert upload(reply, b"x" * MAX_BYTES) == 204


def test_s3_refuses_another_content_type(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)
    assert upload(reply, b"<svg/>", content_type="image/svg+xml") == 403


def attachment_body(key: str, **extra: Any) -> dict[str, Any]:
    return {"text": "see attached", "attachment": {"key": key, **extra}}


def send_attachment(chat: Any, connection: str, key: str, **extra: Any) -> dict[str, Any]:
    frame = {"action": "send", "room": "lobby", "body": attachment_body(key, **extra), "ref": "s"}
    reply: dict[str, Any] = chat.send(connection, frame)
    return reply


def test_a_send_referencing_the_uploaded_object_is_accepted(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)
    assert upload(reply, b"hello") == 204
    ack = send_attachment(chat, alice, reply["key"], size=5, contentType="text/plain")
    assert ack["type"] == "ack", ack


def test_a_send_referencing_a_missing_object_is_refused(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)  # never uploaded
    error = send_attachment(chat, alice, reply["key"])
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_request", "s")
    assert "upload it first" in error["message"]


def test_a_send_referencing_another_rooms_object_is_refused(chat: Any, alice: str) -> None:
    assert chat.send(alice, {"action": "join", "room": "other"})["type"] == "joined"
    reply = slot(chat, alice, room="other")
    assert upload(reply, b"hello") == 204
    error = send_attachment(chat, alice, reply["key"])
    assert (error["type"], error["code"]) == ("error", "bad_request")


def test_a_send_referencing_another_users_object_is_refused(
    chat: Any, alice: str, bob: str
) -> None:
    reply = slot(chat, alice)
    assert upload(reply, b"hello") == 204
    error = send_attachment(chat, bob, reply["key"])
    assert (error["type"], error["code"]) == ("error", "forbidden")


def test_a_send_referencing_an_oversized_object_is_refused(
    chat: Any, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = slot(chat, alice)
    assert upload(reply, b"x" * MAX_BYTES) == 204
    # The limit was lowered after the upload (or the object came some other way).
    monkeypatch.setenv("MAX_ATTACHMENT_BYTES", str(MAX_BYTES - 1))
    runtime_settings.reset()
    error = send_attachment(chat, alice, reply["key"])
    assert (error["type"], error["code"]) == ("error", "too_large")


def test_a_send_misdescribing_the_object_is_refused(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)
    assert upload(reply, b"hello") == 204
    assert send_attachment(chat, alice, reply["key"], size=6)["code"] == "bad_request"
    assert send_attachment(chat, alice, reply["key"], contentType="image/png")["code"] == (
        "bad_request"
    )
    assert send_attachment(chat, alice, reply["key"], size="5")["code"] == "bad_request"


def test_a_send_with_an_attachment_that_is_not_an_object_is_refused(chat: Any, alice: str) -> None:
    frame = {"action": "send", "room": "lobby", "body": {"attachment": "rooms/x"}}
    assert chat.send(alice, frame)["code"] == "bad_request"


def test_a_numbered_send_refused_for_its_attachment_keeps_its_place(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)
    frame = {"action": "send", "room": "lobby", "seq": 1, "body": attachment_body(reply["key"])}
    assert chat.send(alice, frame)["code"] == "bad_request"
    assert chat.send(alice, {"action": "send", "room": "lobby", "seq": 2, "body": "x"})["type"] == (
        "ack"
    )


def download(chat: Any, connection: str, key: str, **extra: Any) -> dict[str, Any]:
    reply: dict[str, Any] = chat.send(
        connection, {"action": "download", "room": "lobby", "key": key, "ref": "d", **extra}
    )
    return reply


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_a_non_member_is_refused_a_download_url(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)
    assert upload(reply, b"hello") == 204
    chat.connect("c-eve", "eve")
    error = download(chat, "c-eve", reply["key"])
    assert (error["type"], error["code"]) == ("error", "not_member")


def test_a_download_url_serves_the_bytes_as_an_attachment(chat: Any, alice: str, bob: str) -> None:
    reply = slot(chat, alice, contentType="text/html", name="page.html")
    assert upload(reply, b"<b>hi</b>") == 204
    answer = download(chat, bob, reply["key"])
    assert answer["type"] == "download_url" and answer["region"] == HERE
    assert answer["key"] == reply["key"] and answer["ref"] == "d"
    assert urlsplit(answer["url"]).hostname.startswith(bucket(HERE))
    params = query(answer["url"])
    assert params["response-content-disposition"] == "attachment; filename*=UTF-8''page.html"
    assert "response-content-type" not in params
    fetched = requests.get(answer["url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content == b"<b>hi</b>"


def test_a_safe_image_is_served_inline(chat: Any, alice: str, bob: str) -> None:
    reply = slot(chat, alice, contentType="image/png", size=4)
    assert upload(reply, b"\x89PNG") == 204
    params = query(download(chat, bob, reply["key"])["url"])
    assert params["response-content-disposition"] == "inline"
    assert params["response-content-type"] == "image/png"


def test_before_replication_the_url_points_at_the_origin(chat: Any, bob: str) -> None:
    """An object uploaded in eu-west-1 and not yet copied here: the origin's bucket."""
    key = transfers.AttachmentKey(
        "lobby", ORIGIN, transfers.uploader_tag("alice"), "01JDZ8Y3W6N6B9T3X0M0Q4R2ZA"
    ).key
    boto3.client("s3", region_name=ORIGIN).put_object(
        Bucket=bucket(ORIGIN), Key=key, Body=b"far", ContentType="image/png"
    )
    answer = download(chat, bob, key)
    assert answer["region"] == ORIGIN
    url = urlsplit(answer["url"])
    assert bucket(ORIGIN) in f"{url.hostname}{url.path}"
    # Unknown type here (no HeadObject across regions): never inline.
    assert query(answer["url"])["response-content-disposition"] == "attachment"
    assert requests.get(answer["url"], timeout=30).content == b"far"
    # Once replicated, this region's copy is used.
    boto3.client("s3", region_name=HERE).put_object(
        Bucket=bucket(HERE), Key=key, Body=b"far", ContentType="image/png"
    )
    assert download(chat, bob, key)["region"] == HERE


def test_a_download_of_a_key_of_another_room_or_nothing_is_refused(chat: Any, alice: str) -> None:
    reply = slot(chat, alice)  # never uploaded, and this is its origin region
    assert download(chat, alice, reply["key"])["code"] == "bad_request"
    assert download(chat, alice, "rooms/other/us-east-1/x/y")["code"] == "bad_request"
    assert download(chat, alice, "elsewhere")["code"] == "bad_request"
