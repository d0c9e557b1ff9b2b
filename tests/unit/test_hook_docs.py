"""docs/hooks.md documents every hook in omniretail/hookspecs.py, exactly (the datasette model).

Conventions the page follows (also listed at the end of docs/hooks.md):

* a ``## hook_name`` heading (a single lower-case identifier) opens a hook's section; any other
  heading is free text;
* the section's first ```python block is ``def hook_name(arg: Type, ...) -> Return``, written as in
  hookspecs.py;
* the section has one line ``**firstresult: yes**`` or ``**firstresult: no**``;
* a ```python block right after a line ``Example:`` is an example: it must run and be a valid plugin.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omniretail import hookspecs
from omniretail.host import PluginError, create_plugin_manager

DOC = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
DOC_TEXT = DOC.read_text(encoding="utf-8")

HOOK_HEADING = re.compile(r"^## ([a-z_][a-z0-9_]*)[ \t]*$", re.M)
ANY_H2 = re.compile(r"^## ", re.M)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
EXAMPLE_BLOCK = re.compile(r"^Example:\n\n```python\n(.*?)^```", re.M | re.S)
FIRSTRESULT = re.compile(r"^\*\*firstresult: (yes|no)\*\*", re.M)

Signature = tuple[str, tuple[tuple[str, str | None], ...], str | None]


def hookspec_functions() -> dict[str, Callable[..., Any]]:
    return {name: fn for name, fn in vars(hookspecs).items() if hasattr(fn, "omniretail_spec")}


HOOKS = hookspec_functions()


# -- reading the page ----------------------------------------------------------------------------


def hook_headings(markdown: str) -> list[str]:
    return HOOK_HEADING.findall(markdown)


def hook_sections(markdown: str) -> dict[str, str]:
    """Hook name -> its section's text, up to the next ``## `` heading."""
    sections = {}
    for chunk in ANY_H2.split(markdown)[1:]:
        heading, _, body = chunk.partition("\n")
        if m := HOOK_HEADING.match(f"## {heading}"):
            sections[m.group(1)] = body
    return sections


def examples(markdown: str) -> list[tuple[str | None, int, str]]:
    """(hook of the enclosing section or None, line in the file, source) of each ``Example:`` block."""
    found = []
    for m in EXAMPLE_BLOCK.finditer(markdown):
        heading = HOOK_HEADING.match(markdown, markdown.rfind("\n## ", 0, m.start()) + 1)
        line = markdown.count("\n", 0, m.start(1)) + 1
        found.append((heading.group(1) if heading else None, line, m.group(1)))
    return found


# -- comparing -----------------------------------------------------------------------------------


def normalized(annotation: str | None) -> str | None:
    return None if annotation is None else ast.unparse(ast.parse(annotation, mode="eval"))


def real_signature(fn: Callable[..., Any]) -> Signature:
    sig = inspect.signature(fn)
    empty = inspect.Parameter.empty
    params = tuple(
        (p.name, normalized(None if p.annotation is empty else p.annotation)) for p in sig.parameters.values()
    )
    ret = None if sig.return_annotation is empty else sig.return_annotation
    return fn.__name__, params, normalized(ret)


def documented_signature(block: str) -> Signature:
    fn = ast.parse(block.strip() + ": ...").body[0]
    assert isinstance(fn, ast.FunctionDef), f"not a def: {block!r}"
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    params = tuple((a.arg, ast.unparse(a.annotation) if a.annotation else None) for a in args)
    return fn.name, params, ast.unparse(fn.returns) if fn.returns else None


def render(sig: Signature) -> str:
    name, params, ret = sig
    args = ", ".join(p if ann is None else f"{p}: {ann}" for p, ann in params)
    return f"def {name}({args})" + (f" -> {ret}" if ret else "")


def undocumented(markdown: str) -> list[str]:
    return sorted(set(HOOKS) - set(hook_headings(markdown)))


def stale(markdown: str) -> list[str]:
    return sorted(set(hook_headings(markdown)) - set(HOOKS))


def signature_problems(fn: Callable[..., Any], section: str) -> list[str]:
    block = PYTHON_BLOCK.search(section)
    if block is None:
        return [f"{fn.__name__}: no ```python signature block"]
    doc, real = documented_signature(block.group(1)), real_signature(fn)
    if doc == real:
        return []
    return [f"{fn.__name__}: docs/hooks.md says `{render(doc)}`, hookspecs.py says `{render(real)}`"]


def firstresult_problems(fn: Callable[..., Any], section: str) -> list[str]:
    flags = FIRSTRESULT.findall(section)
    real = "yes" if fn.omniretail_spec["firstresult"] else "no"  # type: ignore[attr-defined]
    if flags == [real]:
        return []
    return [f"{fn.__name__}: docs/hooks.md says firstresult {flags}, hookspecs.py says {real!r}"]


def section_of(name: str, markdown: str = DOC_TEXT) -> str:
    sections = hook_sections(markdown)
    if name not in sections:
        pytest.fail(f"docs/hooks.md has no `## {name}` section")
    return sections[name]


def load_example(source: str, line: int) -> types.ModuleType:
    """Run an example as a module; tracebacks point at its lines in docs/hooks.md."""
    module = types.ModuleType(f"hooks_md_example_line_{line}")
    exec(compile("\n" * (line - 1) + source, str(DOC), "exec"), module.__dict__)
    return module


# -- the page ------------------------------------------------------------------------------------


def test_hookspecs_were_found() -> None:
    assert "register_channels" in HOOKS
    assert "order_placed" in HOOKS


def test_every_hook_is_documented() -> None:
    assert undocumented(DOC_TEXT) == []


def test_no_documented_hook_is_gone_from_hookspecs() -> None:
    assert stale(DOC_TEXT) == []


def test_each_hook_is_documented_once() -> None:
    headings = hook_headings(DOC_TEXT)
    assert sorted(headings) == sorted(set(headings))


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_documented_signature_matches_hookspec(name: str) -> None:
    assert signature_problems(HOOKS[name], section_of(name)) == []


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_documented_firstresult_matches_hookspec(name: str) -> None:
    assert firstresult_problems(HOOKS[name], section_of(name)) == []


def test_every_hook_has_an_example() -> None:
    assert sorted({section for section, _, _ in examples(DOC_TEXT) if section}) == sorted(HOOKS)


EXAMPLES = [pytest.param(*ex, id=f"{ex[0] or 'intro'}-line{ex[1]}") for ex in examples(DOC_TEXT)]


@pytest.mark.parametrize(("section", "line", "source"), EXAMPLES)
def test_example_is_a_valid_plugin(section: str | None, line: int, source: str) -> None:
    module = load_example(source, line)
    pm = create_plugin_manager([module], entry_points=False)  # check_pending(): no misspelt hook
    if section is not None:
        assert section in HOOKS, f"`## {section}` is not a hook"
        implementers = [impl.plugin for impl in getattr(pm.hook, section).get_hookimpls()]
        assert implementers == [module], f"the example under `## {section}` does not implement it"


# -- control: the checker catches drift ---------------------------------------------------------


def test_control_a_wrong_parameter_name_is_reported() -> None:
    right = render(real_signature(hookspecs.order_placed))  # def order_placed(event: OrderPlaced, ...
    wrong = right.replace("(event:", "(evt:")
    assert wrong != right
    doctored = f"# Hook reference\n\n## order_placed\n\n```python\n{wrong}\n```\n\n**firstresult: no**\n"
    assert signature_problems(hookspecs.order_placed, section_of("order_placed", doctored)) == [
        f"order_placed: docs/hooks.md says `{wrong}`, hookspecs.py says `{right}`"
    ]


def test_control_a_wrong_annotation_or_return_is_reported() -> None:
    section = "```python\ndef render_listing(channel: ChannelContext, product: Product) -> None\n```\n"
    assert signature_problems(hookspecs.render_listing, section) != []
    section = "```python\ndef render_listing(channel: Any, product: Product) -> Any\n```\n"
    assert signature_problems(hookspecs.render_listing, section) != []


def test_control_a_flipped_or_missing_firstresult_is_reported() -> None:
    assert firstresult_problems(hookspecs.render_listing, "**firstresult: yes**\n") == []
    assert firstresult_problems(hookspecs.render_listing, "**firstresult: no**\n") != []
    assert firstresult_problems(hookspecs.render_listing, "no flag\n") != []


def test_control_an_example_with_a_misspelt_hook_is_refused() -> None:
    module = load_example("from omniretail import hookimpl\n\n@hookimpl\ndef order_placd(event): ...\n", 1)
    with pytest.raises(PluginError, match="order_placd"):
        create_plugin_manager([module], entry_points=False)


def test_control_missing_and_stale_sections_are_reported() -> None:
    doctored = DOC_TEXT.replace("## order_status_changed\n", "## order_refunded\n")
    assert "order_status_changed" in undocumented(doctored)
    assert "order_refunded" in stale(doctored)
