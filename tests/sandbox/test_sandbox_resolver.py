"""The template resolver: intrinsic functions, pseudo parameters, local physical ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sandbox_templates import CALLBACK_URL_JOIN

from sandbox.assembly import StackArtifact
from sandbox.errors import SandboxError
from sandbox.resolver import NO_VALUE, StackResolver, bounded_name, short_hash


def resolver(resources: dict[str, Any], **template: Any) -> StackResolver:
    stack = StackArtifact(
        name="Stack",
        stack_name="chat-prod-eu-west-1",
        region="eu-west-1",
        template_path=Path("t.json"),
        assembly_dir=Path("."),
        template={"Resources": resources, **template},
    )
    return StackResolver(stack)


RESOURCES: dict[str, Any] = {
    "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
    "Named": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "explicit"}},
    "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
    "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "chat-bus"}},
    "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "WEBSOCKET"}},
    "Stage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {"StageName": "prod"}},
    "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
    "Custom": {"Type": "Custom::Thing", "Properties": {}},
}


def test_pseudo_parameters() -> None:
    r = resolver(RESOURCES)
    value = r.resolve(
        {
            "Fn::Join": [
                ":",
                [
                    {"Ref": "AWS::Region"},
                    {"Ref": "AWS::AccountId"},
                    {"Ref": "AWS::Partition"},
                    {"Ref": "AWS::URLSuffix"},
                    {"Ref": "AWS::StackName"},
                ],
            ]
        },
        "test",
    )
    assert value == "eu-west-1:000000000000:aws:amazonaws.com:chat-prod-eu-west-1"


def test_generated_and_explicit_names() -> None:
    r = resolver(RESOURCES)
    assert r.resolve({"Ref": "Table"}, "t") == "chat-prod-eu-west-1-Table"
    assert r.resolve({"Ref": "Named"}, "t") == "explicit"
    assert r.resolve({"Fn::GetAtt": ["Named", "Arn"]}, "t") == (
        "arn:aws:dynamodb:eu-west-1:000000000000:table/explicit"
    )
    assert r.resolve({"Fn::GetAtt": "Fn.Arn"}, "t") == (
        "arn:aws:lambda:eu-west-1:000000000000:function:chat-prod-eu-west-1-Fn"
    )
    assert r.resolve({"Fn::GetAtt": ["Bus", "Arn"]}, "t") == (
        "arn:aws:events:eu-west-1:000000000000:event-bus/chat-bus"
    )


def test_names_are_deterministic_and_bounded() -> None:
    long = "x" * 100
    assert bounded_name(long, 64) == bounded_name(long, 64)
    assert len(bounded_name(long, 64)) == 64
    assert bounded_name("short", 64) == "short"
    assert short_hash("a", 10) == short_hash("a", 10) != short_hash("b", 10)


def test_callback_url_shape() -> None:
    r = resolver(RESOURCES)
    url = r.resolve(CALLBACK_URL_JOIN, "t")
    api_id = r.resolve({"Ref": "Api"}, "t")
    assert len(api_id) == 10
    assert url == f"https://{api_id}.execute-api.eu-west-1.amazonaws.com/prod"
    assert r.resolve({"Fn::GetAtt": ["Api", "ApiEndpoint"]}, "t") == (
        f"wss://{api_id}.execute-api.eu-west-1.amazonaws.com"
    )


def test_sub_forms() -> None:
    r = resolver(RESOURCES)
    assert r.resolve({"Fn::Sub": "${Bus}/${Bus.Arn}/${!Literal}/${AWS::Region}"}, "t") == (
        "chat-bus/arn:aws:events:eu-west-1:000000000000:event-bus/chat-bus/${Literal}/eu-west-1"
    )
    assert r.resolve({"Fn::Sub": ["${A}-${B}", {"A": "x", "B": {"Ref": "Bus"}}]}, "t") == (
        "x-chat-bus"
    )


def test_select_split_base64_length_tojson() -> None:
    r = resolver(RESOURCES)
    assert r.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}, "t") == "b"
    assert r.resolve({"Fn::Base64": "hi"}, "t") == "aGk="
    assert r.resolve({"Fn::Length": [1, 2, 3]}, "t") == 3
    assert r.resolve({"Fn::ToJsonString": {"a": [1]}}, "t") == '{"a":[1]}'
    assert r.resolve({"Fn::GetAZs": ""}, "t")[0] == "eu-west-1a"


def test_conditions_if_and_no_value() -> None:
    r = resolver(
        {**RESOURCES, "Maybe": {"Type": "AWS::SQS::Queue", "Condition": "IsUs"}},
        Conditions={
            "IsUs": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]},
            "NotUs": {"Fn::Not": [{"Condition": "IsUs"}]},
        },
    )
    assert r.resolve({"Fn::If": ["NotUs", "yes", "no"]}, "t") == "yes"
    assert r.resolve({"a": {"Ref": "AWS::NoValue"}, "b": 1}, "t") == {"b": 1}
    assert r.resolve([{"Ref": "AWS::NoValue"}, 2], "t") == [2]
    assert r.resolve({"Ref": "AWS::NoValue"}, "t") is NO_VALUE
    assert not r.exists("Maybe")
    with pytest.raises(SandboxError, match="no resource Maybe"):
        r.resolve({"Ref": "Maybe"}, "t")


def test_ssm_parameters_resolve_to_a_placeholder() -> None:
    r = resolver(
        RESOURCES,
        Parameters={
            "Layer": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/aws/x"},
            "Plain": {"Type": "String", "Default": "v"},
        },
    )
    assert r.resolve({"Ref": "Layer"}, "t") == "local-ssm-parameter:/aws/x"
    assert r.resolve({"Ref": "Plain"}, "t") == "v"


def test_errors_name_the_resource_and_property() -> None:
    r = resolver(
        {
            **RESOURCES,
            "Fn2": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Environment": {"Variables": {"X": {"Ref": "Missing"}}}},
            },
        }
    )
    with pytest.raises(SandboxError) as error:
        r.prop("Fn2", "Environment")
    message = str(error.value)
    assert "Fn2" in message and "Environment.Variables.X" in message and "Missing" in message


def test_custom_resource_attributes_cannot_be_resolved() -> None:
    r = resolver(RESOURCES)
    with pytest.raises(SandboxError, match=r"Custom\.Value"):
        r.resolve({"Fn::GetAtt": ["Custom", "Value"]}, "resource Fn property X")


def test_unknown_function_is_an_error() -> None:
    r = resolver(RESOURCES)
    with pytest.raises(SandboxError, match="Fn::Cidr"):
        r.resolve({"Fn::Cidr": ["10.0.0.0/16", 2, 8]}, "somewhere")


def test_import_value() -> None:
    stack = StackArtifact("S", "S", "eu-west-1", Path("t"), Path("."), {"Resources": {}})
    r = StackResolver(stack, import_value=lambda name, where: f"imported:{name}")
    assert r.resolve({"Fn::ImportValue": "Shared"}, "t") == "imported:Shared"
