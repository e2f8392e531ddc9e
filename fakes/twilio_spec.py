"""Twilio's OpenAPI descriptions, as the fakes check requests against them: one resource's
create parameters (and list filters), their types, patterns and enums."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SPECS = Path(__file__).parent / "specs"
PATHS = {
    "messages": "/2010-04-01/Accounts/{AccountSid}/Messages.json",
    "calls": "/2010-04-01/Accounts/{AccountSid}/Calls.json",
}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    schema: Mapping[str, Any]


class ResourceSpec:
    """One resource's create parameters and enums, from the OpenAPI description."""

    def __init__(self, raw: Mapping[str, Any], path: str = PATHS["messages"]) -> None:
        self.schemas: Mapping[str, Any] = raw["components"]["schemas"]
        post = raw["paths"][path]["post"]
        form = post["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        self.create_params = {name: ParamSpec(name, s) for name, s in form["properties"].items()}
        self.create_required: tuple[str, ...] = tuple(form.get("required", ()))
        get = raw["paths"][path]["get"]
        self.list_params = {
            p["name"]: ParamSpec(p["name"], p["schema"])
            for p in get["parameters"]
            if p["in"] == "query"
        }

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            resolved: Mapping[str, Any] = self.schemas[ref.rsplit("/", 1)[-1]]
            return resolved
        return schema

    def check_value(self, name: str, value: str, schema: Mapping[str, Any]) -> str | None:
        """Why ``value`` (a form string) does not fit ``schema``, or None."""
        schema = self.resolve(schema)
        kind = schema.get("type")
        if "enum" in schema and value not in schema["enum"]:
            return f"{name}: {value!r} is not one of {schema['enum']}"
        if kind == "integer" and not re.fullmatch(r"-?\d+", value):
            return f"{name}: {value!r} is not an integer"
        if kind == "number":
            try:
                float(value)
            except ValueError:
                return f"{name}: {value!r} is not a number"
        if kind == "boolean" and value.lower() not in ("true", "false"):
            return f"{name}: {value!r} is not true or false"
        if kind == "string":
            if "minLength" in schema and len(value) < schema["minLength"]:
                return f"{name}: shorter than {schema['minLength']} characters"
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                return f"{name}: longer than {schema['maxLength']} characters"
            if "pattern" in schema and not re.search(schema["pattern"], value):
                return f"{name}: {value!r} does not match {schema['pattern']}"
            fmt = schema.get("format")
            if fmt == "uri" and not schema.get("x-twilio", {}).get("ignoreFormat"):
                parts = urlsplit(value)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    return f"{name}: {value!r} is not an absolute http(s) URL"
            if fmt == "date-time":
                try:
                    datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    return f"{name}: {value!r} is not an ISO 8601 date-time"
        return None


@cache
def load_resource_spec(resource: str) -> ResourceSpec:
    """``messages`` or ``calls``, from ``fakes/specs/twilio_api_v2010_<resource>.json``."""
    path = SPECS / f"twilio_api_v2010_{resource}.json"
    with path.open(encoding="utf-8") as handle:
        return ResourceSpec(json.load(handle), PATHS[resource])
