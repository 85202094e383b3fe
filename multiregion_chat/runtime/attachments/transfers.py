"""Attachments: upload slots, the check of a ``send`` that references one, download URLs.

A file never passes through the chat: a member asks for an upload slot (a presigned POST
for a key the server chooses), uploads straight to its region's bucket, then sends a
message whose body references the key (docs/protocol.md, "Attachments"). S3 replicates
the object to every other region's bucket (infra/attachments.py); a member anywhere asks
its own region for a download URL.

Keys are ``rooms/<room>/<origin region>/<uploader>/<id>``:

* the room: a download or a reference is only good in the room the object was uploaded to;
* the origin region: where the object certainly is, for a download that arrives before
  replication did (the URL then points at the origin's bucket);
* the uploader: a digest of the user id (S3 keys and metadata want short ASCII), so a
  ``send`` can only reference what its own user uploaded. The POST policy pins the exact
  key, so a client can upload nowhere else.

The POST policy also pins the declared ``Content-Type`` and bounds the size
(``content-length-range`` 1..``MAX_ATTACHMENT_BYTES``): S3 itself refuses anything else.
A ``send`` costs one HeadObject; a download one HeadObject (the content type decides
whether the URL may show inline), none when it points at the origin.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, NamedTuple
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.platform.observability import count
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.protocol.attachment_requests import Download, Upload, attachment_ref
from multiregion_chat.runtime.protocol.frames import (
    BAD_REQUEST,
    FORBIDDEN,
    TOO_LARGE,
    ProtocolError,
)
from multiregion_chat.runtime.protocol.reply_limits import RateLimitedFrameError
from multiregion_chat.runtime.quota import client_budget

__all__ = [
    "INLINE_TYPES",
    "SLOT_SECONDS",
    "URL_SECONDS",
    "AttachmentKey",
    "check_reference",
    "download_url",
    "upload_slot",
    "uploader_tag",
]

KEY_PREFIX: Final = "rooms/"
SLOT_SECONDS: Final = 300  # long enough to upload the largest file on a slow link
URL_SECONDS: Final = 300  # a download URL is asked for when the member opens the file
# Shown in the browser: image types browsers render without running anything. Every other
# type is served as a download, so an uploaded HTML or SVG never runs in the bucket's origin.
INLINE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
NAME_METADATA: Final = "name"  # x-amz-meta-name: the uploader's file name, percent-encoded


def uploader_tag(user_id: str) -> str:
    """The uploader part of a key: 64 bits of SHA-256 of the user id."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:16]


class AttachmentKey(NamedTuple):
    room: str
    region: str
    uploader: str
    id: str

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{self.room}/{self.region}/{self.uploader}/{self.id}"

    @staticmethod
    def parse(key: str) -> AttachmentKey | None:
        """The parts of a key this module made, None for anything else."""
        if not key.startswith(KEY_PREFIX):
            return None
        parts = key[len(KEY_PREFIX) :].split("/")
        if len(parts) != 4 or not all(parts) or not ids.is_valid_id(parts[3]):
            return None
        return AttachmentKey(*parts)


def _expires_at(seconds: int) -> str:
    return ids.iso_from_ms(ids.now_ms() + seconds * 1000)


def upload_slot(request: Upload, user_id: str, ref: str | None) -> dict[str, Any]:
    """The ``upload_slot`` frame's fields (``key``, ``url``, ``fields``, ``expiresAt``,
    ``maxBytes``) for a member of ``request.room``; charges one of the user's slots."""
    settings = runtime_settings.get_settings()
    max_bytes = settings.max_attachment_bytes
    if request.size > max_bytes:
        raise ProtocolError(
            TOO_LARGE, f"'size' is {request.size} bytes; the limit is {max_bytes}", ref
        )
    try:
        client_budget.enforce_upload_slot(user_id)
    except client_budget.RateLimitedError as error:
        raise RateLimitedFrameError(error.retry_after_ms, error.message, ref) from None
    key = AttachmentKey(request.room, settings.region, uploader_tag(user_id), ids.new_id()).key
    fields = {"Content-Type": request.content_type}
    conditions: list[Any] = [
        ["content-length-range", 1, max_bytes],
        {"Content-Type": request.content_type},
    ]
    if request.name is not None:
        name_field = f"x-amz-meta-{NAME_METADATA}"
        fields[name_field] = quote(request.name, safe="")
        conditions.append({name_field: fields[name_field]})
    post = aws_clients.s3().generate_presigned_post(
        Bucket=settings.attachment_bucket,
        Key=key,
        Fields=fields,
        Conditions=conditions,
        ExpiresIn=SLOT_SECONDS,
    )
    count("UploadSlots")
    return {
        "key": key,
        "url": post["url"],
        "fields": post["fields"],
        "expiresAt": _expires_at(SLOT_SECONDS),
        "maxBytes": max_bytes,
    }


def _head(bucket: str, key: str, region: str | None = None) -> dict[str, Any] | None:
    """HeadObject, None when there is no such object."""
    try:
        head: dict[str, Any] = aws_clients.s3(region).head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return None
        raise
    return head


def check_reference(room: str, user_id: str, body: Any, ref: str | None) -> None:
    """Refuse a ``send`` whose body references an attachment this user did not upload to
    ``room`` in this region, that is not there (yet), or that is over the size limit."""
    try:
        attachment = attachment_ref(body)
    except ValueError as error:
        raise ProtocolError(BAD_REQUEST, str(error), ref) from None
    if attachment is None:
        return
    settings = runtime_settings.get_settings()
    parsed = AttachmentKey.parse(attachment.key)
    if parsed is None or parsed.room != room:
        raise ProtocolError(BAD_REQUEST, f"the attachment is not one of room {room!r}", ref)
    if parsed.uploader != uploader_tag(user_id) or parsed.region != settings.region:
        count("ForbiddenAttachments")
        raise ProtocolError(FORBIDDEN, "reference only an attachment you uploaded here", ref)
    head = _head(settings.attachment_bucket, attachment.key)
    if head is None:
        raise ProtocolError(BAD_REQUEST, "no such attachment; upload it first", ref)
    size, max_bytes = int(head["ContentLength"]), settings.max_attachment_bytes
    if size > max_bytes:
        raise ProtocolError(
            TOO_LARGE, f"the attachment is {size} bytes; the limit is {max_bytes}", ref
        )
    if attachment.size is not None and attachment.size != size:
        raise ProtocolError(BAD_REQUEST, f"'body.attachment.size' is not the object's {size}", ref)
    stored_type = head.get("ContentType")
    if attachment.content_type is not None and attachment.content_type != stored_type:
        raise ProtocolError(
            BAD_REQUEST, f"'body.attachment.contentType' is not the object's {stored_type}", ref
        )
    count("AttachmentMessages")


def _disposition(inline: bool, name: str | None) -> str:
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename*=UTF-8''{quote(name, safe='')}" if name else kind


def download_url(request: Download, ref: str | None) -> dict[str, Any]:
    """The ``download_url`` frame's fields (``url``, ``expiresAt``, ``region``) for a member
    of ``request.room``: this region's copy, or the origin's while replication is behind."""
    settings = runtime_settings.get_settings()
    parsed = AttachmentKey.parse(request.key)
    if parsed is None or parsed.room != request.room:
        raise ProtocolError(BAD_REQUEST, f"the key is not an attachment of {request.room!r}", ref)
    region, bucket = settings.region, settings.attachment_bucket
    head = _head(bucket, request.key)
    if head is None:
        if parsed.region == settings.region or parsed.region not in settings.origin_regions:
            raise ProtocolError(BAD_REQUEST, "no such attachment", ref)
        # Not replicated here yet: the origin has it (presigning asks nothing of it).
        count("OriginDownloads")
        region, bucket = parsed.region, settings.attachment_bucket_of(parsed.region)
    content_type = head.get("ContentType") if head else None
    inline = content_type in INLINE_TYPES
    stored_name = (head or {}).get("Metadata", {}).get(NAME_METADATA)
    name = request.name or (unquote(stored_name) if stored_name else None)
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": request.key,
        "ResponseContentDisposition": _disposition(inline, name),
    }
    if inline:
        params["ResponseContentType"] = content_type
    url = aws_clients.s3(region).generate_presigned_url(
        "get_object", Params=params, ExpiresIn=URL_SECONDS
    )
    count("DownloadUrls")
    return {"url": url, "expiresAt": _expires_at(URL_SECONDS), "region": region}
