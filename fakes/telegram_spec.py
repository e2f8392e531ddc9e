"""Checks Bot API requests and objects against the official spec in ``fakes/specs/``.

Telegram accepts parameters three ways: a JSON body (typed values), a URL-encoded form or a
multipart form (every value a string; objects and arrays JSON-serialised, as python-telegram-bot
sends them). :class:`BotApiSpec` checks a request in either shape: the method exists, required
fields are present, no field is unknown, and every value has one of the field's types; objects
such as ``InlineKeyboardMarkup`` are checked recursively, and an abstract type such as
``BotCommandScope`` accepts any of its subtypes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).parent / "specs" / "telegram_bot_api.json"

_INTEGER = re.compile(r"^-?\d+$")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


# A String field whose description fixes its value: the discriminator of a union's forms
# (BotCommandScopeChat.type is "chat", ChatMemberOwner.status is "creator", ...).
_CONSTANT = re.compile(r'(?:always|must be) [“"]?([a-z_]+)[”"]?')
_DISCRIMINATORS = frozenset({"type", "status", "source"})


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[str, ...]
    required: bool
    constant: str | None = None


class BotApiSpec:
    """The Bot API methods and types, read once from the spec file."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.version: str = raw["version"]
        self.methods: dict[str, dict[str, Field]] = {
            name: _fields(method.get("fields", [])) for name, method in raw["methods"].items()
        }
        self.types: dict[str, dict[str, Field]] = {
            name: _fields(kind.get("fields", []), discriminated="subtype_of" in kind)
            for name, kind in raw["types"].items()
        }
        self.subtypes: dict[str, tuple[str, ...]] = {
            name: tuple(kind["subtypes"])
            for name, kind in raw["types"].items()
            if "subtypes" in kind
        }
        # Telegram matches method names case-insensitively.
        self._by_lower = {name.lower(): name for name in self.methods}

    def method_name(self, name: str) -> str | None:
        """The spec's spelling of ``name``, or None if the Bot API has no such method."""
        return self._by_lower.get(name.lower())

    def check_request(self, method: str, params: Mapping[str, Any], *, form: bool) -> list[str]:
        """Every way ``params`` breaks the spec of ``method`` (empty when the request is valid).

        ``form`` says the values came from a URL-encoded or multipart body: they are strings, and
        objects or arrays inside them are JSON text.
        """
        fields = self.methods[method]
        problems = [f"{method}: unknown field {name!r}" for name in params if name not in fields]
        problems += [
            f"{method}: missing required field {field.name!r}"
            for field in fields.values()
            if field.required and field.name not in params
        ]
        for name, value in params.items():
            field = fields.get(name)
            if field is not None:
                problems += self.check_value(value, field.types, f"{method}.{name}", form=form)
        return problems

    def check_object(self, type_name: str, value: Any, path: str | None = None) -> list[str]:
        """Every way a JSON ``value`` breaks the spec of the object type ``type_name``."""
        return self.check_value(value, (type_name,), path or type_name, form=False)

    def check_value(
        self, value: Any, types: tuple[str, ...], path: str, *, form: bool
    ) -> list[str]:
        """Problems with ``value`` for a field typed ``types`` (it must match one of them)."""
        if form and isinstance(value, str | bytes) and any(_is_structured(t) for t in types):
            # In a form, objects and arrays travel as JSON text; plain strings stay plain.
            if isinstance(value, bytes):
                return []  # an uploaded file part (InputFile)
            checked = self._check_json_text(value, types, path)
            if checked is not None:
                return list(checked)
        attempts: list[list[str]] = []
        for kind in types:
            problems = self._check_one(value, kind, path, form=form)
            if not problems:
                return []
            attempts.append(problems)
        # Report the closest miss: the attempt that failed deepest is the likely intended type.
        best = min(attempts, key=len) if attempts else []
        if len(types) > 1 and all(
            p == [_type_error(path, value, t)] for p, t in zip(attempts, types, strict=True)
        ):
            return [f"{path}: expected {' or '.join(types)}, got {_describe(value)}"]
        return best

    @lru_cache(maxsize=4096)  # noqa: B019 - one spec per process; a campaign repeats its keyboard
    def _check_json_text(
        self, text: str, types: tuple[str, ...], path: str
    ) -> tuple[str, ...] | None:
        """Problems of a JSON-encoded object or array, or None if ``text`` is not one."""
        try:
            decoded = json.loads(text)
        except ValueError:
            return None
        if not isinstance(decoded, dict | list):
            return None
        return tuple(self.check_value(decoded, types, path, form=False))

    def _check_one(self, value: Any, kind: str, path: str, *, form: bool) -> list[str]:
        if kind.startswith("Array of "):
            inner = kind.removeprefix("Array of ")
            if not isinstance(value, list):
                return [_type_error(path, value, kind)]
            problems: list[str] = []
            for index, item in enumerate(value):
                problems += self.check_value(item, (inner,), f"{path}[{index}]", form=False)
            return problems
        if kind == "Integer":
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                form and isinstance(value, str) and bool(_INTEGER.match(value))
            )
            return [] if ok else [_type_error(path, value, kind)]
        if kind == "Float":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if form and isinstance(value, str):
                try:
                    float(value)
                    ok = True
                except ValueError:
                    ok = False
            return [] if ok else [_type_error(path, value, kind)]
        if kind == "Boolean":
            ok = isinstance(value, bool) or (
                form and isinstance(value, str) and value.lower() in _BOOLEANS
            )
            return [] if ok else [_type_error(path, value, kind)]
        if kind == "String":
            return [] if isinstance(value, str) else [_type_error(path, value, kind)]
        if kind == "InputFile":
            # a multipart upload part, or (in JSON/forms) an attach:// reference or file id / URL
            return [] if isinstance(value, str | bytes) else [_type_error(path, value, kind)]
        if kind in self.subtypes:
            attempts = [
                self._check_one(value, sub, path, form=False) for sub in self.subtypes[kind]
            ]
            if any(not a for a in attempts):
                return []
            return [f"{path}: matches none of {kind}'s forms ({', '.join(self.subtypes[kind])})"]
        if kind in self.types:
            return self._check_fields(value, kind, path)
        return [f"{path}: the spec has no type {kind!r}"]

    def _check_fields(self, value: Any, kind: str, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [_type_error(path, value, kind)]
        fields = self.types[kind]
        problems = [
            f"{path}: unknown field {name!r} in {kind}" for name in value if name not in fields
        ]
        problems += [
            f"{path}: missing required field {f.name!r} of {kind}"
            for f in fields.values()
            if f.required and f.name not in value
        ]
        for name, item in value.items():
            field = fields.get(name)
            if field is None:
                continue
            if field.constant is not None and item != field.constant:
                problems.append(f"{path}.{name}: must be {field.constant!r} in {kind}")
            else:
                problems += self.check_value(item, field.types, f"{path}.{name}", form=False)
        return problems


def _fields(raw: list[Mapping[str, Any]], *, discriminated: bool = False) -> dict[str, Field]:
    fields = {}
    for f in raw:
        constant = None
        if discriminated and f["types"] == ["String"] and f["name"] in _DISCRIMINATORS:
            match = _CONSTANT.search(f.get("description", ""))
            constant = match.group(1) if match else None
        fields[f["name"]] = Field(
            name=f["name"], types=tuple(f["types"]), required=bool(f["required"]), constant=constant
        )
    return fields


def _is_structured(kind: str) -> bool:
    return kind.startswith("Array of ") or kind not in {
        "Integer",
        "Float",
        "Boolean",
        "String",
        "InputFile",
    }


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"{type(value).__name__} {text[:40]}"


def _type_error(path: str, value: Any, kind: str) -> str:
    return f"{path}: expected {kind}, got {_describe(value)}"


@cache
def load_spec(path: Path = SPEC_PATH) -> BotApiSpec:
    """The Bot API spec (parsed once per process)."""
    with path.open(encoding="utf-8") as handle:
        return BotApiSpec(json.load(handle))
