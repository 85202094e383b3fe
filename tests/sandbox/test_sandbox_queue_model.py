"""Queues and SQS event source mappings in the model: settings, names, warnings, errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sandbox_templates import AssemblyFactory, queue_template

from sandbox.assembly import load_stacks
from sandbox.errors import SandboxError
from sandbox.template_model import RegionModel, build_models

REGION = "eu-west-1"


def model_of(make_assembly: AssemblyFactory, template: dict[str, Any]) -> RegionModel:
    (model,) = build_models(load_stacks(make_assembly({REGION: template})), None)
    return model


def test_queues_mappings_and_reserved_concurrency(make_assembly: AssemblyFactory) -> None:
    model = model_of(make_assembly, queue_template("/tmp/out"))
    work = model.queues["WorkQueue"]
    assert work.name == f"chat-{REGION}-WorkQueue"
    assert work.url == f"https://sqs.{REGION}.amazonaws.com/000000000000/{work.name}"
    assert work.attributes == {"VisibilityTimeout": "12"}
    assert work.dead_letter_arn == model.queues["DeadLetters"].arn and work.max_receive_count == 2
    mappings = {m.logical_id: m for m in model.mappings}
    assert mappings["WorkMapping"].function == "Work"
    assert mappings["WorkMapping"].report_batch_item_failures
    assert mappings["WorkMapping"].maximum_concurrency == 2
    assert mappings["ReservedMapping"].maximum_concurrency is None
    assert mappings["SlowMapping"].batch_size == 1 and mappings["SlowMapping"].enabled
    assert model.functions["Reserved"].reserved_concurrency == 2
    assert model.functions["Work"].reserved_concurrency is None
    producer = model.functions["Producer"]
    assert producer.environment["WORK_QUEUE_URL"] == work.url  # the sandbox maps it to moto


def test_function_name_forms_fifo_names_and_warnings(make_assembly: AssemblyFactory) -> None:
    template = copy.deepcopy(queue_template("/tmp/out"))
    resources = template["Resources"]
    resources["SlowMapping"]["Properties"]["FunctionName"] = {
        "Fn::Sub": "arn:aws:lambda:${AWS::Region}:${AWS::AccountId}:function:${Slow}:live"
    }
    resources["ReservedMapping"]["Properties"]["FunctionName"] = {
        "Fn::Sub": "000000000000:function:${Reserved}"
    }
    resources["Ordered"] = {"Type": "AWS::SQS::Queue", "Properties": {"FifoQueue": True}}
    resources["StreamMapping"] = {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": "arn:aws:dynamodb:eu-west-1:000000000000:table/t/stream/x",
            "FunctionName": {"Ref": "Work"},
        },
    }
    resources["Work"]["Properties"]["Timeout"] = 13  # over the queue's visibility timeout
    model = model_of(make_assembly, template)
    mappings = {m.logical_id: m for m in model.mappings}
    assert mappings["SlowMapping"].function == "Slow"
    assert mappings["ReservedMapping"].function == "Reserved"
    assert "StreamMapping" not in mappings
    assert model.queues["Ordered"].name.endswith(".fifo") and model.queues["Ordered"].fifo
    warnings = "\n".join(model.warnings)
    assert "StreamMapping: event source" in warnings and "not emulated" in warnings
    assert "VisibilityTimeout 12s is less than function Work Timeout 13s" in warnings


def test_a_mapping_to_a_foreign_queue_stops_the_sandbox(make_assembly: AssemblyFactory) -> None:
    template = copy.deepcopy(queue_template("/tmp/out"))
    template["Resources"]["WorkMapping"]["Properties"]["EventSourceArn"] = (
        "arn:aws:sqs:eu-west-1:000000000000:elsewhere"
    )
    with pytest.raises(SandboxError, match=r"WorkMapping: EventSourceArn .* is not a queue"):
        model_of(make_assembly, template)
