"""docs/configuration.md documents every key of omniretail.toml, and only keys that exist.

Conventions the page follows (also listed at the end of docs/configuration.md):

* each table is a ``### [table]`` section: ``### [[locations]]``, ``### [channels.*]`` for the keys
  every channel has, ``### [channels.<name>]`` per installed channel, ``### [payments.*]`` and
  ``### [payments.<name>]`` likewise for payment providers, ``### [[loyalty.tiers]]`` for an array
  of tables inside a table; a section runs to the next heading;
* each key is a table row whose first cell is the key in backticks;
* the third cell (Default) starts with the default as TOML in backticks, or ``unset`` or ``required``;
* the ```toml block under ``## Complete example`` must load.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

import msgspec
import pytest

from omniretail import config
from omniretail.host import collect_channels, collect_payment_providers, create_plugin_manager

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
DOC_TEXT = DOC.read_text(encoding="utf-8")

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
SECTION = re.compile(r"^### (\[\[?[a-z_.*]+\]\]?)[ \t]*$", re.M)
HEADING = re.compile(r"^#{1,6} ", re.M)
KEY_CELL = re.compile(r"`([a-z_][a-z0-9_]*)`")
CELL_SPLIT = re.compile(r"(?<!\\)\|")
COMPLETE_EXAMPLE = re.compile(r"^## Complete example\n.*?^```toml\n(.*?)^```", re.M | re.S)

Sections = dict[str, dict[str, str]]  # "[store]" -> {key: default text}


# -- what the page says --------------------------------------------------------------------------


def documented(markdown: str) -> Sections:
    """Each ``### [table]`` section's keys, with the Default cell of each."""
    text = FENCE.sub("", markdown)  # a `# comment` in a code block is not a heading
    sections: Sections = {}
    for m in SECTION.finditer(text):
        end = next_heading.start() if (next_heading := HEADING.search(text, m.end())) else len(text)
        rows = {}
        for line in text[m.end() : end].splitlines():
            cells = [c.strip() for c in CELL_SPLIT.split(line.strip())[1:-1]]
            if cells and (key := KEY_CELL.fullmatch(cells[0])):
                rows[key.group(1)] = cells[2] if len(cells) > 2 else ""
        sections[m.group(1)] = rows
    return sections


# -- what the code says --------------------------------------------------------------------------


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return toml_literal(value.value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return repr(value)


def default_text(field: msgspec.structs.FieldInfo) -> str:
    if field.required:
        return "required"
    value = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
    return "unset" if value is None else f"`{toml_literal(value)}`"


def struct_keys(struct: type[msgspec.Struct] | None) -> dict[str, str]:
    return {} if struct is None else {f.name: default_text(f) for f in msgspec.structs.fields(struct)}


def installed_settings() -> dict[str, type[msgspec.Struct] | None]:
    return {name: spec.settings for name, (spec, _) in collect_channels(create_plugin_manager()).items()}


def installed_payment_settings() -> dict[str, type[msgspec.Struct] | None]:
    return {name: spec.settings for name, (spec, _) in collect_payment_providers(create_plugin_manager()).items()}


def struct_array(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct of ``tuple[Struct, ...]`` (an array of tables), else None."""
    args = get_args(tp)
    if get_origin(tp) is tuple and args and isinstance(args[0], type) and issubclass(args[0], msgspec.Struct):
        return args[0]
    return None


@functools.cache
def expected() -> Sections:
    """Every table of the file (as the strict decoder reads it) and every installed channel's."""
    sections: Sections = {}
    for field in msgspec.structs.fields(config._Document):
        if field.name in ("channels", "payments"):
            continue
        if (array := struct_array(field.type)) is not None:  # [[locations]]: an array of tables
            sections[f"[[{field.name}]]"] = struct_keys(array)
        else:
            sections[f"[{field.name}]"] = struct_keys(field.type)
            for inner in msgspec.structs.fields(field.type):  # [[loyalty.tiers]]
                if (array := struct_array(inner.type)) is not None:
                    sections[f"[[{field.name}.{inner.name}]]"] = struct_keys(array)
    common = struct_keys(config.ChannelConfig)
    sections["[channels.*]"] = {key: common[key] for key in config.COMMON_CHANNEL_KEYS}
    for name, settings in installed_settings().items():
        sections[f"[channels.{name}]"] = struct_keys(settings)
    common = struct_keys(config.PaymentConfig)
    sections["[payments.*]"] = {key: common[key] for key in config.COMMON_PAYMENT_KEYS}
    for name, settings in installed_payment_settings().items():
        sections[f"[payments.{name}]"] = struct_keys(settings)
    return sections


# -- comparing -----------------------------------------------------------------------------------


def missing(doc: Sections, code: Sections) -> list[str]:
    found = []
    for section, keys in code.items():
        if section not in doc:
            found.append(f"{section}: no `### {section}` section")
            continue
        found += [f"{section}: `{key}` is not documented" for key in keys if key not in doc[section]]
    return found


def unknown(doc: Sections, code: Sections) -> list[str]:
    found = []
    for section, keys in doc.items():
        if section not in code:
            found.append(f"{section}: documented, but there is no such table or channel")
            continue
        found += [f"{section}: `{key}` is documented, but is not a key" for key in keys if key not in code[section]]
    return found


def wrong_defaults(doc: Sections, code: Sections) -> list[str]:
    return sorted(
        f"{s}: `{k}` default is documented as {doc[s][k]!r}, the code says {code[s][k]!r}"
        for s in code.keys() & doc.keys()
        for k in code[s].keys() & doc[s].keys()
        if not doc[s][k].startswith(code[s][k])
    )


# -- the page ------------------------------------------------------------------------------------


def test_the_tables_were_found() -> None:
    assert {"[store]", "[[locations]]", "[channels.*]", "[channels.webshop]"} <= expected().keys()
    assert {"[payments.*]", "[payments.card]", "[loyalty]", "[[loyalty.tiers]]"} <= expected().keys()
    assert "currency" in documented(DOC_TEXT)["[store]"]


def test_every_key_is_documented() -> None:
    assert missing(documented(DOC_TEXT), expected()) == []


def test_every_documented_key_exists() -> None:
    assert unknown(documented(DOC_TEXT), expected()) == []


def test_documented_defaults_match_the_code() -> None:
    assert wrong_defaults(documented(DOC_TEXT), expected()) == []


def complete_example(markdown: str) -> str:
    m = COMPLETE_EXAMPLE.search(markdown)
    assert m is not None, "no ```toml block under `## Complete example`"
    return m.group(1)


def test_complete_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    example = complete_example(DOC_TEXT)
    for name in re.findall(r'"env:([A-Za-z_][A-Za-z0-9_]*)"', example):
        monkeypatch.setenv(name, "test-value")
    loaded = config.parse_config(
        tomllib.loads(example), installed_settings(), payment_settings=installed_payment_settings()
    )
    assert loaded.enabled_channels
    assert loaded.enabled_payments


def test_complete_example_uses_every_table() -> None:
    tables = tomllib.loads(complete_example(DOC_TEXT)).keys()
    assert set(tables) == {f.name for f in msgspec.structs.fields(config._Document)}


# -- control: the checker catches drift ---------------------------------------------------------

# The real page with the marketplace's `webhook_secret` row misspelt.
DOCTORED = DOC_TEXT.replace("| `webhook_secret` |", "| `webhook_secrets` |")


def test_control_a_missing_key_is_reported() -> None:
    assert DOCTORED != DOC_TEXT
    assert "[channels.marketplace]: `webhook_secret` is not documented" in missing(documented(DOCTORED), expected())


def test_control_an_unknown_key_is_reported() -> None:
    problems = unknown(documented(DOCTORED), expected())
    assert "[channels.marketplace]: `webhook_secrets` is documented, but is not a key" in problems


def test_control_a_stale_section_is_reported() -> None:
    doctored = DOC_TEXT.replace("### [channels.voice]\n", "### [channels.fax]\n")
    assert "[channels.voice]: no `### [channels.voice]` section" in missing(documented(doctored), expected())
    problems = unknown(documented(doctored), expected())
    assert "[channels.fax]: documented, but there is no such table or channel" in problems


def test_control_a_wrong_default_is_reported() -> None:
    doc = {"[gateway]": {"port": "`8080`"}}
    code = {"[gateway]": {"port": "`8000`"}}
    assert wrong_defaults(doc, code) == ["[gateway]: `port` default is documented as '`8080`', the code says '`8000`'"]


def test_control_a_code_block_comment_is_not_a_heading() -> None:
    markdown = '### [store]\n\n```toml\n# a comment\n```\n\n| `name` | string | `"x"` | The name. |\n'
    assert documented(markdown) == {"[store]": {"name": '`"x"`'}}
