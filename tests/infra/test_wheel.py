"""The wheel a team installs: one package, its metadata, and a team app beside it.

The wheel is built from a copy of the checkout (no build isolation, offline: the test
environment's setuptools). The team app is examples/team_app, which has its own ``stacks/``,
``clients/`` and ``app.py``: it runs in a fresh venv where the wheel is the only copy of the
project (the venv sees the test environment's packages through a ``.pth`` file for the CDK
libraries and the clients' dependencies; the project itself is not installed there).
"""

from __future__ import annotations

import email
import json
import shutil
import sys
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import multiregion_chat

from .helpers import REPO_ROOT
from .packaging import NOT_SHIPPED, copy_checkout, offline_pip_env, run_checked, venv_seeing_tests

PACKAGE = "multiregion_chat"


@dataclass
class Built:
    wheel: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("wheel")
    source = copy_checkout(work / "source")
    env = offline_pip_env()
    dist = work / "dist"
    run_checked(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)], env=env
    )
    (wheel,) = dist.glob(f"{PACKAGE}-*.whl")
    return Built(wheel=wheel, env=env)


def _metadata(wheel: Path) -> tuple[list[str], Message]:
    with zipfile.ZipFile(wheel) as archive:
        (record,) = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
        (meta,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        paths = [line.split(",")[0] for line in archive.read(record).decode().splitlines() if line]
        return paths, email.message_from_bytes(archive.read(meta))


def test_the_wheel_installs_one_package_and_nothing_else(built: Built) -> None:
    paths, _ = _metadata(built.wheel)
    tops = {path.split("/")[0] for path in paths}
    assert tops == {PACKAGE, f"{PACKAGE}-{multiregion_chat.__version__}.dist-info"}
    assert not [path for path in paths if path.endswith(".pth")]
    shipped = set(paths)
    assert {
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/py.typed",
        f"{PACKAGE}/runtime/requirements.txt",  # the dependencies layer's pins
        f"{PACKAGE}/runtime/handlers/client_message_handler.py",
        f"{PACKAGE}/infra/deployment.py",
        f"{PACKAGE}/clients/web/index.html",
        f"{PACKAGE}-{multiregion_chat.__version__}.dist-info/licenses/LICENSE",
    } <= shipped


def test_the_metadata_states_license_version_and_extras(built: Built) -> None:
    _, meta = _metadata(built.wheel)
    assert meta["Name"] == "multiregion-chat"
    assert meta["Version"] == multiregion_chat.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert set(meta.get_all("Provides-Extra") or []) == {"client", "server-api"}
    requires = meta.get_all("Requires-Dist") or []
    client = {r.split(">")[0].split("=")[0].strip() for r in requires if 'extra == "client"' in r}
    assert client == {"aiohttp", "websockets", "PyJWT"}
    assert any(r.startswith("aws-cdk-lib") and "extra" not in r for r in requires)


def test_a_team_app_with_its_own_stacks_and_clients_imports_the_public_api(
    built: Built, tmp_path: Path
) -> None:
    team = tmp_path / "team_app"
    shutil.copytree(REPO_ROOT / "examples" / "team_app", team, ignore=NOT_SHIPPED)
    assert (team / "stacks" / "__init__.py").is_file() and (team / "clients").is_dir()
    site = venv_seeing_tests(team, built.env)
    python = str(team / ".venv" / "bin" / "python")
    run_checked([python, "-m", "pip", "install", f"{built.wheel}[client]"], cwd=team, env=built.env)

    probe = (
        "import json, multiregion_chat, stacks.team_chat, clients.support\n"
        "from multiregion_chat import ChatConfig, ChatDeployment, FunctionSpec, RegionOverrides\n"
        "names = {n: getattr(multiregion_chat, n).__module__ for n in multiregion_chat.__all__\n"
        "         if n != '__version__'}\n"
        "print(json.dumps({'package': multiregion_chat.__file__,\n"
        "                  'stacks': stacks.team_chat.__file__,\n"
        "                  'clients': clients.support.__file__, 'names': names}))"
    )
    found = run_checked([python, "-c", probe], cwd=team, env=built.env)
    where = json.loads(found.stdout.strip().splitlines()[-1])
    assert Path(where["package"]).is_relative_to(site)
    assert Path(where["stacks"]).is_relative_to(team)
    assert Path(where["clients"]).is_relative_to(team)
    assert set(where["names"]) == set(multiregion_chat.__all__) - {"__version__"}
    # Grant is a type alias (a Callable), the rest are the infra's classes.
    classes = {name: module for name, module in where["names"].items() if name != "Grant"}
    assert all(module.startswith(f"{PACKAGE}.infra.") for module in classes.values()), classes

    # `pip install '<wheel>[client]'` makes the CLI client run (it imports aiohttp first).
    cli = run_checked([python, "-m", f"{PACKAGE}.clients.chat", "--help"], cwd=team, env=built.env)
    assert "--room" in cli.stdout


def test_the_changelog_leads_with_this_version() -> None:
    """The version lives in ``multiregion_chat.__version__`` (pyproject reads it); the changelog
    says what it changed."""
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = [line.split("]")[0].removeprefix("## [") for line in changelog.splitlines()]
    newest = next(v for v in versions if v and v[0].isdigit())
    assert newest == multiregion_chat.__version__
    assert 'dynamic = ["version"]' in (REPO_ROOT / "pyproject.toml").read_text()
