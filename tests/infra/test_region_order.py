"""Adding a region: the documented order never forwards to a bus that does not exist yet.

A region's forwarding rules target every other region's chat bus. When a region is added,
the existing stacks gain a target for it, and an event forwarded to a bus that does not exist
yet goes to the replication dead-letter queue (and its alarm fires). docs/deploying.md,
"Adding a region", therefore deploys the new region's stack first, on its own
(``cdk deploy -e``), then every stack. This test replays the deploys of both orders stack by
stack on the synthesized templates and checks, after each stack, that every forwarding target
of every deployed stack is a deployed bus: the documented order passes, the plain
``cdk deploy --all`` order (the first region first, by the stack dependency) has the window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from .helpers import ACCOUNT, JsonDict, SynthResult, forwarding_rules, resolve, synth

BEFORE = ("us-east-1", "eu-west-1", "ap-northeast-1")
ADDED = "eu-north-1"

# One deploy: (the app version, the regions whose stacks are deployed from it, in order).
Step = tuple[str, Sequence[str]]


@pytest.fixture(scope="module")
def app4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    yield synth({"regions": ",".join((*BEFORE, ADDED))}, tmp_path_factory.mktemp("app4"))


def bus_arn(region: str, bus_name: str) -> str:
    return f"arn:aws:events:{region}:{ACCOUNT}:event-bus/{bus_name}"


def forwarded_to(template: JsonDict, region: str) -> set[str]:
    return {
        resolve(target["Arn"], region=region)
        for rule in forwarding_rules(template).values()
        for target in rule["Properties"]["Targets"]
    }


def windows(apps: dict[str, SynthResult], steps: Sequence[Step]) -> list[str]:
    """Every moment, stack by stack, at which a deployed rule forwards to a missing bus."""
    deployed = {region: "before" for region in BEFORE}  # region -> app version deployed
    found = []
    for version, regions in steps:
        for region in regions:
            deployed[region] = version
            buses = {bus_arn(r, apps[v].config.bus_name) for r, v in deployed.items()}
            for source, source_version in deployed.items():
                template = apps[source_version].template_json(source)
                for missing in sorted(forwarded_to(template, source) - buses):
                    found.append(f"after {region}: {source} forwards to missing {missing}")
    return found


def test_the_documented_order_has_no_window(app3: SynthResult, app4: SynthResult) -> None:
    apps = {"before": app3, "after": app4}
    # 1. `cdk deploy -e chat-prod-eu-north-1`; 2. `cdk deploy --all`.
    documented: list[Step] = [("after", [ADDED]), ("after", [*BEFORE])]
    assert windows(apps, documented) == []


def test_deploying_all_at_once_forwards_to_the_new_region_before_it_exists(
    app3: SynthResult, app4: SynthResult
) -> None:
    apps = {"before": app3, "after": app4}
    # `cdk deploy --all`: the first region first (every stack depends on it), then the rest.
    dependencies = app4.stacks[ADDED].dependencies
    assert [stack.stack_name for stack in dependencies] == ["chat-prod-us-east-1"]
    at_once: list[Step] = [("after", [BEFORE[0]]), ("after", [*BEFORE[1:], ADDED])]
    assert windows(apps, at_once)[0] == (
        f"after us-east-1: us-east-1 forwards to missing {bus_arn(ADDED, 'chat-prod-chat-bus')}"
    )
