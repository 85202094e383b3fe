"""examples/team_app: a separate app that installs this project and extends it.

The example is run exactly as its README says, in a copy of the repository
(the example two folders below the project, as in a checkout): a fresh venv,
``pip install -r requirements.txt`` from the example's folder, then ``cdk
synth`` with the venv first on ``PATH``. Offline: the venv sees this test
environment's packages through a ``.pth`` file (the CDK libraries, and
setuptools for the build), and pip gets ``PIP_NO_INDEX`` and no build
isolation from its environment; the commands themselves are the README's.
The app must import the project installed in that venv, not the checkout.
Its synth runs cdk-nag (ChatDeployment enables it; a finding fails the
synth), then the project's template checks and cfn-lint run on what it wrote.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from multiregion_chat.infra.bundling import CACHE_ENV, cache_root
from multiregion_chat.infra.functions import FRAME_INTAKE_CONNECTIONS_ACTIONS

from .helpers import (
    REPO_ROOT,
    JsonDict,
    api,
    as_list,
    function_by_handler,
    getatt_id,
    of_api,
    resources,
    role_statements,
)
from .packaging import (
    TEST_SITE,
    copy_checkout,
    offline_pip_env,
    run_checked,
    venv_seeing_tests,
)
from .template_checks import (
    CFN_LINT_ERROR,
    CFN_LINT_WARNING,
    cfn_lint,
    check_no_wildcards_except_xray,
    check_queues_enforce_tls,
    check_rule_targets,
)

EXAMPLE = REPO_ROOT / "examples" / "team_app"


@dataclass
class ExampleSynth:
    site: Path  # the example venv's site-packages, where the project was installed
    outdir: Path
    context: dict[str, object]

    def template(self, region: str) -> JsonDict:
        stack_name = f"{self.context['appName']}-{self.context['stage']}-{region}"
        template: JsonDict = json.loads((self.outdir / f"{stack_name}.template.json").read_text())
        return template


def readme_commands() -> list[str]:
    """The shell commands of the example's README (its one ``sh`` block)."""
    readme = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleSynth]:
    work = tmp_path_factory.mktemp("team_app")
    source = copy_checkout(work / "source")
    folder = source / "examples" / "team_app"
    outdir = folder / "cdk.out"
    venv_bin = folder / ".venv" / "bin"
    env = {
        **offline_pip_env(),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        # The checkout's layer cache (the app's default is its own folder's .cache, empty
        # here), since filling it needs the network.
        CACHE_ENV: str(cache_root()),
    }
    commands = readme_commands()
    assert commands == [
        "python3 -m venv .venv",
        ".venv/bin/pip install -r requirements.txt",
        'PATH="$PWD/.venv/bin:$PATH" npx cdk synth',
    ]
    # 1. the venv (with this Python: the tests' interpreter is the one they pin)
    site = venv_seeing_tests(folder, env)
    # 2. the install, word for word. Without build isolation pip builds the wheel with the
    # venv's setuptools, and Python 3.11's venv bundles 65: the test environment's (>= 77,
    # requirements-dev.txt, what pip's isolated build would fetch) goes first.
    install_env = {**env, "PYTHONPATH": TEST_SITE}
    run_checked(
        [str(venv_bin / "pip"), "install", "-r", "requirements.txt"], cwd=folder, env=install_env
    )
    # 3. the synth, the venv first on PATH (cdk.json: python3 app.py); `npx cdk` is the
    # project's pinned CLI, named by its path (the copy has no node_modules to find)
    # pip's offline settings were for the install: a layer the cache lacks (another test
    # may have pointed the cache elsewhere) is built from the registry, as for a user.
    synth_env = {
        **{k: v for k, v in env.items() if k != "PIP_NO_INDEX"},
        "PATH": f"{venv_bin}{os.pathsep}{env['PATH']}",
    }
    run_checked(
        [str(REPO_ROOT / "node_modules" / ".bin" / "cdk"), "synth"], cwd=folder, env=synth_env
    )

    # The example imports the installed project, not the checkout (or its copy).
    where = run_checked(
        [
            str(venv_bin / "python3"),
            "-c",
            "import multiregion_chat.infra.deployment as d; print(d.__file__)",
        ],
        cwd=folder,
        env=synth_env,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout
    context = json.loads((EXAMPLE / "cdk.json").read_text())["context"]
    yield ExampleSynth(site=site, outdir=outdir, context=context)


def test_templates_pass_the_project_checks(example: ExampleSynth) -> None:
    regions = example.context["regions"]
    assert isinstance(regions, list)
    for region in regions:
        template = example.template(region)
        check_rule_targets(template)
        check_no_wildcards_except_xray(template)
        check_queues_enforce_tls(template)
    code, output = cfn_lint(sorted(example.outdir.glob("*.template.json")))
    assert code & CFN_LINT_ERROR == 0, output
    assert code & CFN_LINT_WARNING == 0, output


def test_the_route_has_its_own_function_and_a_route_response(example: ExampleSynth) -> None:
    template = example.template("us-east-1")
    api_id, _ = api(template, "WEBSOCKET")
    routes = {
        route["Properties"]["RouteKey"]: logical_id
        for logical_id, route in of_api(template, "AWS::ApiGatewayV2::Route", api_id).items()
    }
    assert "whoami" in routes
    responses = {
        response["Properties"]["RouteId"]["Ref"]
        for response in resources(template, "AWS::ApiGatewayV2::RouteResponse").values()
    }
    assert routes["whoami"] in responses
    handlers = {
        function["Properties"]["Handler"]
        for function in resources(template, "AWS::Lambda::Function").values()
    }
    assert {"whoami.handler", "moderation.handler"} <= handlers
    alarms = {
        a["Properties"]["AlarmDescription"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert {"WhoAmI invocations failed", "Moderation invocations failed"} <= alarms


def test_the_code_asset_carries_the_runtime_package(example: ExampleSynth) -> None:
    template = example.template("us-east-1")
    (whoami,) = [
        f
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "whoami.handler"
    ]
    asset = example.outdir / whoami["Metadata"]["aws:asset:path"]
    assert (asset / "whoami.py").is_file()
    assert (asset / "multiregion_chat" / "runtime" / "intake" / "extension.py").is_file()


def test_the_bus_consumer_sees_messages_only(example: ExampleSynth) -> None:
    template = example.template("eu-west-1")
    patterns = [
        rule["Properties"]["EventPattern"]
        for rule in resources(template, "AWS::Events::Rule").values()
    ]
    # Both chat sources: the server API's messages (system senders) are messages too.
    assert {
        "source": ["teamchat.chat", "teamchat.chat.server"],
        "detail-type": ["chat.message"],
    } in patterns


def test_the_override_applies_to_its_region_only(example: ExampleSynth) -> None:
    def shape(region: str) -> tuple[object, ...]:
        template = example.template(region)
        (stage,) = [
            s
            for s in resources(template, "AWS::ApiGatewayV2::Stage").values()
            if s["Properties"]["StageName"] == "dev"
        ]
        (moderation,) = [
            f
            for f in resources(template, "AWS::Lambda::Function").values()
            if f["Properties"]["Handler"] == "moderation.handler"
        ]
        (alarm,) = [
            a
            for a in resources(template, "AWS::CloudWatch::Alarm").values()
            if a["Properties"]["MetricName"] == "IntegrationError"
        ]
        settings = stage["Properties"]["DefaultRouteSettings"]
        return (
            settings["ThrottlingRateLimit"],
            settings["ThrottlingBurstLimit"],
            moderation["Properties"]["MemorySize"],
            alarm["Properties"]["Threshold"],
        )

    assert shape("eu-west-1") == (50, 100, 512, 25)
    assert shape("us-east-1") == (100, 200, 256, 10)


def test_the_route_function_may_charge_and_close_like_the_builtin_actions(
    example: ExampleSynth,
) -> None:
    """Issue 18, item 3: a team action is charged, expiry-checked and closed by the runtime,
    so its role reads and writes the budget and may post to and close connections."""
    template = example.template("us-east-1")
    _, function = function_by_handler(template, "whoami.handler")
    role_id = getatt_id(function["Properties"]["Role"])
    actions = {
        action
        for statement in role_statements(template, role_id)
        for action in as_list(statement["Action"])
    }
    assert set(FRAME_INTAKE_CONNECTIONS_ACTIONS) <= actions
    assert "execute-api:ManageConnections" in actions
    assert "CALLBACK_URL" in function["Properties"]["Environment"]["Variables"]
