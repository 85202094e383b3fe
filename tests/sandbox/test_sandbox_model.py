"""From a cloud assembly to what the sandbox runs, and clear errors for bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from sandbox_templates import AssemblyFactory, chat_template, lambda_arn

from sandbox.assembly import load_stacks
from sandbox.errors import SandboxError
from sandbox.template_model import build_models

REGIONS = ["us-east-1", "eu-west-1", "ap-northeast-1"]


def test_models_of_a_chat_assembly(chat_assembly: Path) -> None:
    models = build_models(load_stacks(chat_assembly), None)
    assert [m.region for m in models] == REGIONS
    model = models[1]
    assert model.websocket is not None
    assert model.websocket.stage == "prod"
    assert set(model.websocket.routes) == {"$connect", "$disconnect", "$default", "send"}
    assert model.websocket.routes["send"].return_response
    assert not model.websocket.routes["$connect"].return_response
    assert list(model.functions) == ["Handler"]  # NodeFunction is not used: not run
    spec = model.functions["Handler"]
    assert spec.code_dir == (chat_assembly / "asset.code").resolve()
    # The template's Timeout; no MemorySize, so Lambda's default.
    assert (spec.timeout_seconds, spec.memory_size) == (5, 128)
    assert spec.environment["TABLE"] == "chat-eu-west-1-Table"
    assert spec.environment["CALLBACK_URL"] == (
        f"https://{model.websocket.api_id}.execute-api.eu-west-1.amazonaws.com/prod"
    )
    table = model.tables[0]
    assert table.ttl_attribute == "expiresAt"
    assert table.create_args["GlobalSecondaryIndexes"][0]["IndexName"] == "byG"
    assert model.buses == ["default", "chat-bus"]
    delivery, forwarding = model.rules
    assert delivery.targets[0].kind == "lambda" and delivery.targets[0].function == "Handler"
    assert [(t.kind, t.bus_region, t.bus_name) for t in forwarding.targets] == [
        ("bus", "us-east-1", "chat-bus"),
        ("bus", "ap-northeast-1", "chat-bus"),
    ]
    assert model.warnings == []


def test_region_subset_keeps_the_requested_order(chat_assembly: Path) -> None:
    models = build_models(load_stacks(chat_assembly), ["ap-northeast-1", "us-east-1"])
    assert [m.region for m in models] == ["ap-northeast-1", "us-east-1"]


def test_unknown_region(chat_assembly: Path) -> None:
    with pytest.raises(SandboxError, match="no stack in sa-east-1"):
        build_models(load_stacks(chat_assembly), ["sa-east-1"])


def test_missing_cdk_out(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="no cloud assembly"):
        load_stacks(tmp_path / "nowhere")


def test_region_agnostic_stack_is_refused(make_assembly: AssemblyFactory) -> None:
    out = make_assembly({"us-east-1": chat_template("us-east-1", ["us-east-1"])})
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"]["chat-us-east-1"]["environment"] = "aws://unknown-account/unknown-region"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SandboxError, match="names no region"):
        load_stacks(out)


def test_route_to_a_missing_function(make_assembly: AssemblyFactory) -> None:
    template = chat_template("us-east-1", ["us-east-1"])
    uri = template["Resources"]["Integration"]["Properties"]["IntegrationUri"]
    uri["Fn::Join"][1][5] = "arn:aws:lambda:us-east-1:000000000000:function:Gone"
    out = make_assembly({"us-east-1": template})
    with pytest.raises(SandboxError) as error:
        build_models(load_stacks(out), None)
    message = str(error.value)
    assert "Integration" in message and "function Gone" in message


def test_unresolvable_environment(make_assembly: AssemblyFactory) -> None:
    template = chat_template("us-east-1", ["us-east-1"])
    template["Resources"]["Handler"]["Properties"]["Environment"]["Variables"]["X"] = {
        "Fn::GetAtt": ["Table", "NoSuchAttribute"]
    }
    out = make_assembly({"us-east-1": template})
    with pytest.raises(SandboxError, match=r"Handler.*Variables\.X.*NoSuchAttribute"):
        build_models(load_stacks(out), None)


def test_non_python_handler_on_a_route(make_assembly: AssemblyFactory) -> None:
    template = chat_template("us-east-1", ["us-east-1"])
    props = template["Resources"]["Integration"]["Properties"]
    props["IntegrationUri"]["Fn::Join"][1][5] = {"Fn::GetAtt": ["NodeFunction", "Arn"]}
    out = make_assembly({"us-east-1": template})
    with pytest.raises(SandboxError, match=r"NodeFunction.*Python handlers only"):
        build_models(load_stacks(out), None)


def test_function_without_local_code(make_assembly: AssemblyFactory) -> None:
    template = chat_template("us-east-1", ["us-east-1"])
    del template["Resources"]["Handler"]["Metadata"]
    out = make_assembly({"us-east-1": template})
    with pytest.raises(SandboxError, match=r"Handler.*no local code"):
        build_models(load_stacks(out), None)


def test_missing_permission_and_schedule_are_warnings(make_assembly: AssemblyFactory) -> None:
    template = copy.deepcopy(chat_template("us-east-1", ["us-east-1"]))
    del template["Resources"]["Permission"]
    template["Resources"]["Nightly"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {"ScheduleExpression": "rate(1 day)", "Targets": []},
    }
    out = make_assembly({"us-east-1": template})
    (model,) = build_models(load_stacks(out), None)
    assert any("events.amazonaws.com" in w for w in model.warnings)
    assert any("Nightly" in w and "scheduled" in w for w in model.warnings)


def test_event_invoke_config_sets_the_async_retries(make_assembly: AssemblyFactory) -> None:
    template = chat_template("us-east-1", ["us-east-1"])
    template["Resources"]["InvokeConfig"] = {
        "Type": "AWS::Lambda::EventInvokeConfig",
        "Properties": {
            "FunctionName": {"Ref": "Handler"},
            "MaximumRetryAttempts": 0,
            "Qualifier": "$LATEST",
        },
    }
    out = make_assembly({"us-east-1": template})
    (model,) = build_models(load_stacks(out), None)
    assert model.async_retries == {"Handler": 0}


def test_buckets_and_custom_resources(make_assembly: AssemblyFactory) -> None:
    template = chat_template("us-east-1", ["us-east-1"])
    named = {"Fn::Join": ["-", ["files", {"Ref": "AWS::AccountId"}, {"Ref": "AWS::Region"}]]}
    template["Resources"].update(
        {
            "Files": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": named,
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "CorsConfiguration": {"CorsRules": [{"AllowedMethods": ["GET"], "MaxAge": 60}]},
                },
            },
            "Logs": {"Type": "AWS::S3::Bucket"},
            "Setup": {
                "Type": "Custom::Setup",
                "Properties": {
                    "ServiceToken": lambda_arn("Handler"),
                    "Bucket": {"Ref": "Files"},
                },
            },
            "Elsewhere": {
                "Type": "Custom::Elsewhere",
                "Properties": {"ServiceToken": "arn:aws:lambda:us-east-1:1:function:NotHere"},
            },
        }
    )
    (model,) = build_models(load_stacks(make_assembly({"us-east-1": template})), None)
    files, logs = model.buckets
    assert (files.name, files.versioned) == ("files-000000000000-us-east-1", True)
    assert files.cors_rules == [{"AllowedMethods": ["GET"], "MaxAgeSeconds": 60}]
    assert logs.name == logs.name.lower() and not logs.versioned  # generated: lower case
    (setup,) = model.custom_resources
    assert (setup.logical_id, setup.function) == ("Setup", "Handler")
    assert setup.properties == {"Bucket": "files-000000000000-us-east-1"}
    assert any("Elsewhere" in w and "not run here" in w for w in model.warnings)
