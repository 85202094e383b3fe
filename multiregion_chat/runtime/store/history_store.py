"""The messages (history) table: one item per message (layout: :mod:`runtime.store.layout`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol.chat_model import ChatMessage
from multiregion_chat.runtime.protocol.ids import epoch_seconds
from multiregion_chat.runtime.protocol.json_codec import compact_json, loads_strict
from multiregion_chat.runtime.store.layout import (
    Item,
    is_conditional_failure,
    query_pages,
    str_attr,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = ["put_message", "query_messages"]


def _message_table() -> str:
    return runtime_settings.get_settings().messages_table


def put_message(message: ChatMessage) -> bool:
    """Write ``message`` to history; False if it was already there (a duplicate event)."""
    settings = runtime_settings.get_settings()
    sender: dict[str, AttributeValueTypeDef] = {
        "userId": {"S": message.sender.user_id},
        "region": {"S": message.sender.region},
    }
    if message.sender.name:
        sender["name"] = {"S": message.sender.name}
    try:
        aws_clients.dynamodb().put_item(
            TableName=settings.messages_table,
            Item={
                "room": {"S": message.room},
                "id": {"S": message.id},
                "sender": {"M": sender},
                "body": {"S": compact_json(message.body)},
                "sentAt": {"S": message.sent_at},
                "originRegion": {"S": message.origin_region},
                "expiresAt": {"N": str(epoch_seconds() + settings.history_retention_seconds)},
            },
            ConditionExpression="attribute_not_exists(#id)",
            ExpressionAttributeNames={"#id": "id"},
        )
    except ClientError as error:
        if is_conditional_failure(error):
            return False
        raise
    return True


def _message_from_item(item: Item) -> dict[str, Any]:
    sender_item = item.get("sender", {}).get("M", {})
    sender = {"userId": str_attr(sender_item, "userId") or ""}
    if name := str_attr(sender_item, "name"):
        sender["name"] = name
    sender["region"] = str_attr(sender_item, "region") or ""
    return {
        "room": str_attr(item, "room"),
        "id": str_attr(item, "id"),
        "sender": sender,
        "body": loads_strict(str_attr(item, "body") or "null"),
        "sentAt": str_attr(item, "sentAt"),
    }


def query_messages(
    room: str, after: str | None, limit: int, *, consistent: bool = False
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` messages of ``room`` with id > ``after``, oldest first, and
    whether more follow. Pages past DynamoDB's 1 MB responses as needed."""
    key = "#room = :room"
    names = {"#room": "room"}
    values: dict[str, AttributeValueTypeDef] = {":room": {"S": room}}
    if after:
        key += " AND #id > :after"
        names["#id"] = "id"  # DynamoDB rejects unused placeholders
        values[":after"] = {"S": after}
    items: list[Item] = []
    pages = query_pages(
        TableName=_message_table(),
        KeyConditionExpression=key,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ScanIndexForward=True,
        Limit=limit + 1,
        ConsistentRead=consistent,
    )
    for page in pages:
        items.extend(page)
        if len(items) > limit:
            break
    return [_message_from_item(i) for i in items[:limit]], len(items) > limit
