"""The generated API reference (docs/api/): the public API and every construct, from docstrings.

``make api-docs`` writes it; tests/infra/test_api_reference.py regenerates it into a temporary
folder and fails when the committed copy differs, so the reference cannot go stale.

pdoc reads the modules (signatures, ``__all__``, docstrings, Google-style sections); this module
renders what pdoc read as Markdown rather than pdoc's HTML, because the repository's own pages link
to the reference and GitHub renders Markdown, not HTML, and a reviewer reads a docstring's change as
a one-line diff. Nothing in the output depends on the time, the machine or the order of imports.

What is documented: the package root (``multiregion_chat.__all__``), every module of
``multiregion_chat.infra`` that defines a public construct or one of the root's names, and the
server API client (docs/extending.md).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pdoc.doc
import pdoc.docstrings
from constructs import Construct

__all__ = [
    "CLIENT_MODULES",
    "ROOT",
    "construct_classes",
    "docstring_markdown",
    "main",
    "page_name",
    "reference_modules",
    "render",
    "write_reference",
]

ROOT = "multiregion_chat"
INFRA = "multiregion_chat.infra"
CLIENT_MODULES = ("multiregion_chat.clients.server_api_client",)
INDEX = "README.md"  # GitHub shows a folder's README.md under its listing

# A default value's repr can carry an object's address; it would change on every run.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_LITERAL_BLOCK_MARKER = re.compile(r"::\n\n(?=    )")


def page_name(module_name: str) -> str:
    return f"{module_name}.md"


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but ``-``/``_`` dropped."""
    text = heading.strip().lower().replace(" ", "-")
    return re.sub(r"[^\w-]", "", text)


def docstring_markdown(docstring: str) -> str:
    """A docstring as it appears in the reference: Google sections and reST roles as Markdown."""
    markdown = pdoc.docstrings.convert(docstring, "google", None).strip()
    # reST's "text::" introduces the indented block that Markdown already shows as code.
    return _LITERAL_BLOCK_MARKER.sub(":\n\n", markdown)


def summary(docstring: str) -> str:
    """The first paragraph of a docstring on one line, for the index's tables."""
    first = docstring.strip().split("\n\n", 1)[0]
    return " ".join(first.split()).replace("|", "\\|")


def root_module() -> ModuleType:
    root = importlib.import_module(ROOT)
    # The root loads its names on first use (PEP 562) and pdoc reads a module's __dict__:
    # looking each name up once puts it there, as a team's first import would.
    for name in root.__all__:
        getattr(root, name)
    return root


def construct_classes(module: ModuleType) -> list[type[Construct]]:
    """The public constructs a module defines (re-exports are documented where they live)."""
    found = []
    for name in getattr(module, "__all__", ()):
        value = getattr(module, name)
        if (
            inspect.isclass(value)
            and issubclass(value, Construct)
            and value.__module__ == module.__name__
            and not name.startswith("_")
        ):
            found.append(value)
    return found


def _infra_modules() -> Iterator[ModuleType]:
    infra = importlib.import_module(INFRA)
    for info in sorted(pkgutil.iter_modules(infra.__path__), key=lambda info: info.name):
        yield importlib.import_module(f"{INFRA}.{info.name}")


def _defined_in(module_name: str, member: pdoc.doc.Doc) -> str:
    """Where a member is documented; a type alias's ``taken_from`` names what it aliases."""
    where = member.taken_from[0]
    return where if where == ROOT or where.startswith(f"{ROOT}.") else module_name


def _root_homes(root: pdoc.doc.Module) -> dict[str, str]:
    """Each root name -> the module that documents it (the root's own table, then pdoc's)."""
    exports: dict[str, str] = getattr(root.obj, "_EXPORTS", {})
    homes = {}
    for name in root.members:
        module_name = exports.get(name, ROOT)
        member = pdoc.doc.Module(importlib.import_module(module_name)).members[name]
        homes[name] = _defined_in(module_name, member)
    return homes


def reference_modules() -> list[str]:
    """Names of the modules with a page: where the root's names and the constructs live."""
    root = pdoc.doc.Module(root_module())
    names = set(_root_homes(root).values()) - {ROOT}
    names |= {module.__name__ for module in _infra_modules() if construct_classes(module)}
    return [ROOT, *sorted(names), *CLIENT_MODULES]


def _clean(text: str) -> str:
    return _ADDRESS.sub("", text)


def _signature(function: pdoc.doc.Function) -> str:
    return _clean(str(function.signature_without_self))


def _variable_line(variable: pdoc.doc.Variable) -> str:
    line = f"{variable.name}{_clean(variable.annotation_str)}"
    if variable.default_value_str:
        line += f" = {_clean(variable.default_value_str)}"
    return line


def _described(docstring: str) -> list[str]:
    return [docstring_markdown(docstring), ""] if docstring.strip() else []


def _member_lines(owner: pdoc.doc.Class) -> list[str]:
    lines: list[str] = []
    for member in owner.own_members:
        if member.name.startswith("_") or isinstance(member, pdoc.doc.Class):
            continue
        heading = f"### `{owner.name}.{member.name}`"
        if isinstance(member, pdoc.doc.Function):
            code = f"{member.funcdef} {member.name}{_signature(member)}"
        elif isinstance(member, pdoc.doc.Variable):
            # pdoc also finds ``self.x = ...`` in __init__; without a type or a docstring such a
            # line says nothing the class's "Attributes" section does not say better.
            if not member.annotation_str and not member.docstring.strip():
                continue
            code = _variable_line(member)
        else:
            continue
        lines += [heading, "", "```python", code, "```", "", *_described(member.docstring)]
    return lines


def _class_lines(cls: pdoc.doc.Class) -> list[str]:
    bases = ", ".join(base[2] for base in cls.bases)
    lines = [
        f"## `{cls.name}`",
        "",
        "```python",
        f"class {cls.name}({bases})" if bases else f"class {cls.name}",
    ]
    init = cls.members.get("__init__")
    if isinstance(init, pdoc.doc.Function) and init.taken_from[0] == cls.taken_from[0]:
        lines.append(f"{cls.name}{_signature(init)}")
    lines += ["```", "", *_described(cls.docstring), *_member_lines(cls)]
    return lines


def _module_member_lines(
    module: pdoc.doc.Module, member: pdoc.doc.Doc, defined_in: str
) -> list[str]:
    if defined_in != module.modulename:
        link = f"{page_name(defined_in)}#{anchor(member.name)}"
        return [f"## `{member.name}`", "", f"Re-exported from [`{defined_in}`]({link}).", ""]
    if isinstance(member, pdoc.doc.Class):
        return _class_lines(member)
    if isinstance(member, pdoc.doc.Function):
        code = f"{member.funcdef} {member.name}{_signature(member)}"
    elif isinstance(member, pdoc.doc.Variable):
        code = _variable_line(member)
    else:
        return []
    return [f"## `{member.name}`", "", "```python", code, "```", "", *_described(member.docstring)]


def _module_page(module: pdoc.doc.Module) -> str:
    lines = [f"# `{module.modulename}`", "", "[API reference](README.md)", ""]
    lines += _described(module.docstring)
    homes = _root_homes(module) if module.modulename == ROOT else {}
    for name, member in module.members.items():
        defined_in = homes.get(name) or _defined_in(module.modulename, member)
        lines += _module_member_lines(module, member, defined_in)
    return "\n".join(lines).rstrip("\n") + "\n"


def _index_page(root: pdoc.doc.Module, modules: dict[str, pdoc.doc.Module]) -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `make api-docs` (tools/api_reference.py); do not edit.",
        "tests/infra/test_api_reference.py fails when this folder differs from what the code says.",
        "",
        "## The public API: `multiregion_chat`",
        "",
        "A team's CDK app imports these from the package root (docs/extending.md).",
        "",
        "| name | defined in | what |",
        "|---|---|---|",
    ]
    homes = _root_homes(root)
    for member in root.members.values():
        defined_in = homes[member.name]
        link = f"{page_name(defined_in)}#{anchor(member.name)}"
        # A re-exported variable (Grant) keeps its docstring in the module that assigns it.
        home = modules.get(defined_in)
        docstring = member.docstring or (
            home.members[member.name].docstring if home and member.name in home.members else ""
        )
        lines.append(f"| [`{member.name}`]({link}) | `{defined_in}` | {summary(docstring)} |")
    lines += [
        "",
        "## Constructs",
        "",
        "What `ChatRegionStack` composes, one per logical unit (docs/architecture.md).",
        "",
        "| construct | module | what |",
        "|---|---|---|",
    ]
    for name, module in modules.items():
        for cls in construct_classes(module.obj):
            documented = module.members[cls.__name__]
            link = f"{page_name(name)}#{anchor(cls.__name__)}"
            lines.append(
                f"| [`{cls.__name__}`]({link}) | `{name}` | {summary(documented.docstring)} |"
            )
    lines += ["", "## Modules", ""]
    for name, module in modules.items():
        lines.append(f"- [`{name}`]({page_name(name)}): {summary(module.docstring)}")
    return "\n".join(lines) + "\n"


def render() -> dict[str, str]:
    """Every page of the reference by file name."""
    root_module()
    with warnings.catch_warnings():
        # pdoc warns about what it cannot resolve; here that is an error, not a note.
        warnings.simplefilter("error")
        modules = {
            name: pdoc.doc.Module(importlib.import_module(name)) for name in reference_modules()
        }
        pages = {page_name(name): _module_page(module) for name, module in modules.items()}
        pages[INDEX] = _index_page(modules[ROOT], modules)
    return pages


def write_reference(out: Path) -> list[Path]:
    """Replace ``out`` with the reference; a page of a removed module does not linger."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for name, text in sorted(render().items()):
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/api"), help="default docs/api")
    args = parser.parse_args(argv)
    written = write_reference(args.out)
    print(f"api-docs: {len(written)} pages in {args.out}")


if __name__ == "__main__":
    main()
