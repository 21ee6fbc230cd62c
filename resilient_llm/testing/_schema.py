"""JSON the simulated model writes for a JSON schema: a deterministic instance, and schemas found in prompts.

:func:`instance_of` builds one value that validates against a schema as structured-output
libraries write them (pydantic's ``model_json_schema``, OpenAI strict schemas): objects with every
property filled, arrays, enums and consts, strings (with common formats and length bounds),
numbers within their bounds, booleans, ``$ref`` into ``$defs``/``definitions``, ``anyOf``/``oneOf``
(the first branch that is not ``null``), ``allOf``. Where a schema offers a value (``const``,
``enum``, ``examples``, ``default``) the first one is used, so a test can steer what the model
"decides"; a plain string is the name of its property.

:func:`schema_in` finds a schema pasted into a prompt, as instructor's JSON mode and "prompted
output" modes do, so a ``json_object`` answer can follow it the way a real model would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["instance_of", "schema_in"]

_MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}
_SCHEMA_MARKERS = ('"properties"', '"$defs"')


def instance_of(schema: Mapping[str, Any], *, name: str = "value") -> Any:
    """A JSON value that validates against ``schema``; ``name`` names a top-level string."""
    return _Builder(schema).value(schema, name, 0)


class _Builder:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self._root = root

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            return {}
        node: Any = self._root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            key = part.replace("~1", "/").replace("~0", "~")
            node = node.get(key, {}) if isinstance(node, Mapping) else {}
        return node if isinstance(node, Mapping) else {}

    def value(self, schema: Mapping[str, Any], name: str, depth: int) -> Any:
        if "$ref" in schema:
            merged = {
                **self._resolve(str(schema["$ref"])),
                **{k: v for k, v in schema.items() if k != "$ref"},
            }
            return self.value(merged, name, depth + 1)
        for key in ("const",):
            if key in schema:
                return schema[key]
        for key in ("enum", "examples"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return options[0]
        if "default" in schema:
            return schema["default"]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self._branch(branches, depth), name, depth + 1)
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                part = self._resolve(part["$ref"]) if isinstance(part, Mapping) and "$ref" in part else part
                if isinstance(part, Mapping):
                    merged = _merge(merged, part)
            return self.value(merged, name, depth + 1)
        return self._typed(schema, _type_of(schema), name, depth)

    def _branch(self, branches: list[Any], depth: int) -> Mapping[str, Any]:
        """The first branch that is not ``null`` (the ``null`` one past the depth limit, to end recursion)."""
        nulls = [b for b in branches if isinstance(b, Mapping) and b.get("type") == "null"]
        others = [b for b in branches if isinstance(b, Mapping) and b.get("type") != "null"]
        if depth >= _MAX_DEPTH and nulls:
            return nulls[0]
        return others[0] if others else (nulls[0] if nulls else {})

    def _typed(self, schema: Mapping[str, Any], type_: str, name: str, depth: int) -> Any:
        if type_ == "object":
            return self._object(schema, depth)
        if type_ == "array":
            return self._array(schema, name, depth)
        if type_ == "integer":
            return _integer(schema)
        if type_ == "number":
            return _number(schema)
        if type_ == "boolean":
            return True
        if type_ == "null":
            return None
        return _string(schema, name)

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        result: dict[str, Any] = {}
        for key, sub in properties.items():
            if depth >= _MAX_DEPTH and key not in required:
                continue
            result[key] = self.value(sub if isinstance(sub, Mapping) else {}, key, depth + 1)
        for key in required:
            result.setdefault(key, key)
        minimum = schema.get("minProperties")
        extra = schema.get("additionalProperties")
        if isinstance(minimum, int) and len(result) < minimum:
            sub = extra if isinstance(extra, Mapping) else {}
            for i in range(len(result), minimum):
                result[f"key{i}"] = self.value(sub, f"key{i}", depth + 1)
        return result

    def _array(self, schema: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = [p for p in prefix if isinstance(p, Mapping)] if isinstance(prefix, list) else []
        items = schema.get("items")
        items = items if isinstance(items, Mapping) else {}
        low = schema.get("minItems", 0)
        high = schema.get("maxItems")
        wanted = len(prefix) if prefix else (0 if depth >= _MAX_DEPTH else 2)
        count = max(low if isinstance(low, int) else 0, wanted)
        if isinstance(high, int):
            count = min(count, high)
        out = [self.value(p, name, depth + 1) for p in prefix[:count]]
        out += [self.value(items, name, depth + 1) for _ in range(count - len(out))]
        if schema.get("uniqueItems") and len(out) > 1 and not _distinct(out):
            out = out[:1]
        return out


def _type_of(schema: Mapping[str, Any]) -> str:
    type_ = schema.get("type")
    if isinstance(type_, list):
        named = [t for t in type_ if t != "null"]
        type_ = named[0] if named else "null"
    if isinstance(type_, str):
        return type_
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**a, **b}
    if isinstance(a.get("properties"), Mapping) and isinstance(b.get("properties"), Mapping):
        merged["properties"] = {**a["properties"], **b["properties"]}
    if isinstance(a.get("required"), list) and isinstance(b.get("required"), list):
        merged["required"] = [*a["required"], *b["required"]]
    return merged


def _distinct(values: list[Any]) -> bool:
    seen = {json.dumps(v, sort_keys=True) for v in values}
    return len(seen) == len(values)


def _string(schema: Mapping[str, Any], name: str) -> str:
    fmt = schema.get("format")
    text = _FORMATS.get(fmt, name) if isinstance(fmt, str) else name
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text += "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _bounds(schema: Mapping[str, Any], step: float) -> tuple[float | None, float | None]:
    low = schema.get("minimum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"] + step
    high = schema.get("maximum")
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        high = schema["exclusiveMaximum"] - step
    return low, high


def _integer(schema: Mapping[str, Any]) -> int:
    low, high = _bounds(schema, 1)
    value = math.ceil(low) if isinstance(low, (int, float)) else 1
    if isinstance(high, (int, float)) and value > high:
        value = math.floor(high)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int) and multiple > 0 and value % multiple:
        value += multiple - value % multiple
    return value


def _number(schema: Mapping[str, Any]) -> float:
    low, high = _bounds(schema, 1e-6)
    value = float(low) if isinstance(low, (int, float)) else 1.5
    if isinstance(high, (int, float)) and value > high:
        value = float(high)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, (int, float)) and multiple > 0:
        value = math.ceil(value / multiple) * multiple
    return value


def schema_in(texts: Iterable[str]) -> dict[str, Any] | None:
    """The last JSON schema written into ``texts`` (an object with ``properties`` or ``$defs``), if any."""
    found: dict[str, Any] | None = None
    decoder = json.JSONDecoder()
    for text in texts:
        if not any(marker in text for marker in _SCHEMA_MARKERS):
            continue
        at = text.find("{")
        while at != -1:
            try:
                candidate, end = decoder.raw_decode(text, at)
            except ValueError:
                at = text.find("{", at + 1)
                continue
            if isinstance(candidate, dict) and _looks_like_schema(candidate):
                found = candidate
            at = text.find("{", end)
    return found


def _looks_like_schema(candidate: Mapping[str, Any]) -> bool:
    return isinstance(candidate.get("properties"), Mapping) or isinstance(candidate.get("$defs"), Mapping)
