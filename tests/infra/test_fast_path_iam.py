"""The same-region fast path's permissions (issue 17): ClientMessageHandler may write history
only when the fast path is on, and posts only to this API's @connections (POST/DELETE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import (
    JsonDict,
    as_list,
    function_by_handler,
    getatt_id,
    resources,
    role_statements,
    synth,
)


def _messages_actions(template: JsonDict) -> set[str]:
    (messages_table,) = [
        logical_id
        for logical_id in resources(template, "AWS::DynamoDB::Table")
        if "Messages" in logical_id
    ]
    _, function = function_by_handler(
        template, "multiregion_chat.runtime.handlers.client_message_handler.handler"
    )
    actions: set[str] = set()
    for statement in role_statements(template, getatt_id(function["Properties"]["Role"])):
        targets = {str(r) for r in as_list(statement["Resource"])}
        if any(messages_table in target for target in targets):
            actions.update(as_list(statement["Action"]))
    return actions


@pytest.mark.parametrize(("limit", "expected"), [("0", {"dynamodb:Query"}), ("100", None)])
def test_history_writes_only_with_the_fast_path(
    tmp_path: Path, limit: str, expected: set[str] | None
) -> None:
    result = synth({"regions": "us-east-1", "localFastPathMaxMembers": limit}, tmp_path)
    actions = _messages_actions(result.template_json("us-east-1"))
    assert actions == (expected or {"dynamodb:Query", "dynamodb:PutItem"})
