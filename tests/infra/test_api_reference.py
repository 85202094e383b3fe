"""docs/api/ is what the code's docstrings say, and it documents the whole public API.

The reference is committed so the other pages can link to it; regenerating it here and
comparing is what keeps it from going stale. Which names must be there is decided from the
code itself (the root's ``__all__``, every construct class defined in ``multiregion_chat.infra``),
not from the generator, so a name the generator drops fails here.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import re

import pdoc.doc
import pytest
from constructs import Construct

import multiregion_chat
import multiregion_chat.infra
from tools.api_reference import INDEX, anchor, docstring_markdown, page_name, render

from .helpers import REPO_ROOT

COMMITTED = REPO_ROOT / "docs" / "api"
_INDEX_LINK = re.compile(r"\[`(?P<name>[^`]+)`\]\((?P<page>[^)#]+)#(?P<anchor>[^)]+)\)")
_LINK = re.compile(r"\]\((?P<page>[^)#:]+\.md)(?:#(?P<anchor>[^)]+))?\)")
_HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return render()


def index_links(index: str) -> dict[str, str]:
    """Each name the index lists -> the page it links to."""
    return {match["name"]: match["page"] for match in _INDEX_LINK.finditer(index)}


def section(page: str, name: str) -> str:
    """The text under the heading ``## `name` `` up to the next heading of that level."""
    match = re.search(rf"^## `{re.escape(name)}`\n(.*?)(?=^## |\Z)", page, re.MULTILINE | re.DOTALL)
    assert match, f"no section {name!r}"
    return match[1]


def own_docstring(value: object) -> str:
    """The docstring written for this class itself: not a base's, not dataclass's signature."""
    doc = value.__dict__.get("__doc__") if inspect.isclass(value) else None
    if not doc:
        return ""
    if dataclasses.is_dataclass(value) and doc.startswith(f"{value.__name__}("):
        return ""
    return inspect.cleandoc(doc)


def root_docstring(name: str) -> str:
    value = getattr(multiregion_chat, name)
    if inspect.isclass(value):
        return own_docstring(value)
    # A variable's docstring is the string after its assignment: only the source has it.
    exports: dict[str, str] = multiregion_chat._EXPORTS  # type: ignore[attr-defined]
    module = importlib.import_module(exports.get(name, multiregion_chat.__name__))
    return pdoc.doc.Module(module).members[name].docstring


def construct_classes() -> list[type[Construct]]:
    """Every public construct class of ``multiregion_chat.infra``, wherever its ``__all__``."""
    found = []
    for info in pkgutil.iter_modules(multiregion_chat.infra.__path__):
        module = importlib.import_module(f"multiregion_chat.infra.{info.name}")
        found += [
            value
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and issubclass(value, Construct)
            and value.__module__ == module.__name__
            and not name.startswith("_")
        ]
    return found


def test_the_committed_reference_is_what_the_code_generates(pages: dict[str, str]) -> None:
    committed = {path.name: path.read_text(encoding="utf-8") for path in COMMITTED.iterdir()}
    assert sorted(committed) == sorted(pages), "docs/api/ is stale: run `make api-docs`"
    stale = sorted(name for name in pages if committed[name] != pages[name])
    assert not stale, f"docs/api/ is stale ({', '.join(stale)}): run `make api-docs`"


@pytest.mark.parametrize("name", multiregion_chat.__all__)
def test_every_root_name_is_in_the_reference_with_its_docstring(
    pages: dict[str, str], name: str
) -> None:
    docstring = root_docstring(name)
    assert docstring, f"multiregion_chat.{name} has no docstring of its own"
    page = index_links(pages[INDEX]).get(name)
    assert page, f"the reference's index does not list {name}"
    assert docstring_markdown(docstring) in section(pages[page], name)


@pytest.mark.parametrize("construct", construct_classes(), ids=lambda cls: cls.__name__)
def test_every_construct_is_in_the_reference_with_its_docstring(
    pages: dict[str, str], construct: type[Construct]
) -> None:
    docstring = own_docstring(construct)
    assert docstring, f"{construct.__module__}.{construct.__name__} has no docstring of its own"
    page = page_name(construct.__module__)
    assert index_links(pages[INDEX]).get(construct.__name__) == page
    assert page in pages, f"no page for {construct.__module__}"
    assert docstring_markdown(docstring) in section(pages[page], construct.__name__)


def test_every_link_into_the_reference_lands_on_a_heading(pages: dict[str, str]) -> None:
    """Links between its pages, and from README.md and docs/*.md into it."""
    anchors = {
        name: {anchor(heading) for heading in _HEADING.findall(text)}
        for name, text in pages.items()
    }
    sources = {f"docs/api/{name}": (COMMITTED, text) for name, text in pages.items()}
    for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        sources[str(path.relative_to(REPO_ROOT))] = (path.parent, path.read_text("utf-8"))
    broken = []
    for source, (folder, text) in sources.items():
        for link in _LINK.finditer(text):
            target = (folder / link["page"]).resolve()
            if target.parent != COMMITTED.resolve():
                continue  # a link to another page of the docs
            if target.name not in pages or (
                link["anchor"] and link["anchor"] not in anchors[target.name]
            ):
                broken.append(f"{source} -> {link['page']}#{link['anchor']}")
    assert not broken
    linked_from = [source for source, (_, text) in sources.items() if "api/README.md" in text]
    assert {"README.md", "docs/architecture.md", "docs/extending.md"} <= set(linked_from)


def assigned_attributes(cls: type) -> set[str]:
    """The public ``self.<name>`` a class's methods assign."""
    tree = ast.parse(inspect.getsource(cls))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        unpacked = [
            element
            for target in targets
            for element in (target.elts if isinstance(target, ast.Tuple) else [target])
        ]
        for target in unpacked:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and not target.attr.startswith("_")
            ):
                found.add(target.attr)
    return found


@pytest.mark.parametrize("construct", construct_classes(), ids=lambda cls: cls.__name__)
def test_every_attribute_of_a_construct_is_described(construct: type[Construct]) -> None:
    """What the hand-kept tables listed: each attribute in the docstring, each property its own."""
    docstring = own_docstring(construct)
    undescribed = sorted(
        name for name in assigned_attributes(construct) if not re.search(rf"\b{name}\b", docstring)
    )
    assert not undescribed, f"{construct.__name__}'s docstring does not name {undescribed}"
    properties = [
        name
        for name, value in vars(construct).items()
        if isinstance(value, property) and not name.startswith("_") and not value.__doc__
    ]
    assert not properties, f"{construct.__name__}'s properties without a docstring: {properties}"
