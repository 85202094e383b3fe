"""Fixtures of the sandbox's unit tests: small cloud assemblies written to tmp_path.

(This folder is not a package: a package named ``sandbox`` would shadow the real one.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sandbox_templates import HANDLER_CODE, AssemblyFactory, chat_template


@pytest.fixture
def make_assembly(tmp_path: Path) -> AssemblyFactory:
    """Write a cloud assembly: {region: template} -> the cdk.out folder."""

    def make(templates: dict[str, dict[str, Any]], code: str = HANDLER_CODE) -> Path:
        out = tmp_path / "cdk.out"
        (out / "asset.code").mkdir(parents=True, exist_ok=True)
        (out / "asset.code" / "app.py").write_text(code)
        artifacts: dict[str, Any] = {}
        for region, template in templates.items():
            name = f"chat-{region}"
            (out / f"{name}.template.json").write_text(json.dumps(template))
            artifacts[name] = {
                "type": "aws:cloudformation:stack",
                "environment": f"aws://unknown-account/{region}",
                "properties": {"templateFile": f"{name}.template.json"},
            }
        (out / "manifest.json").write_text(json.dumps({"version": "1", "artifacts": artifacts}))
        return out

    return make


@pytest.fixture
def chat_assembly(make_assembly: AssemblyFactory) -> Path:
    regions = ["us-east-1", "eu-west-1", "ap-northeast-1"]
    return make_assembly({r: chat_template(r, regions) for r in regions})
