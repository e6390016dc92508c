"""The reserved ``tools:`` list of an assistant definition: :class:`ToolSpec` and its checks.

Each tool has a ``name`` (a letter, then up to 63 letters, digits, ``_`` or ``-``), a
``description``, a ``kind`` and optionally an ``input_schema`` (a JSON Schema mapping with
``type: object``; default: no parameters). ``hang_up`` and ``transfer`` are built into the
daemon; any tool may set ``timeout`` (0.1 to 30 seconds; default ``TOOL_TIMEOUT_MS``). A
``transfer`` needs a ``target`` (an E.164 number or a ``sip:`` URI): the human the call is
handed to. A ``webhook`` needs an ``https://`` ``url`` (``http://`` only to a loopback
host, for development: :func:`actors.webhook_policy.check_webhook_url`) and a
``secret_env``, the name of the environment variable that holds its signing secret (the
secret itself never appears in a definition). A key that does not apply to the kind is an
error, as is a name used twice. :mod:`actors.tool_executors` runs the tools. Sans-IO.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs
import yaml

from actors.definition_issues import IssueCollector, shorten, type_name, yaml_position
from actors.webhook_policy import check_webhook_url

ToolKind = Literal["hang_up", "transfer", "webhook"]

TOOL_KINDS: Final = ("hang_up", "transfer", "webhook")
"""``hang_up`` and ``transfer`` are built into the daemon; ``webhook`` calls a URL."""

_TOOL_KIND_OF: Final[Mapping[object, ToolKind]] = {k: k for k in ("hang_up", "transfer", "webhook")}
_TOOL_KEYS: Final = (
    "name", "description", "kind", "input_schema", "url", "timeout", "target", "secret_env",
)  # fmt: skip
_TOOL_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_TOOL_TIMEOUT_RANGE: Final = (0.1, 30.0)
_TRANSFER_TARGET_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}|sips?:[^\s@]+@[^\s]+")
_ENV_NAME_RE: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_DEFAULT_SCHEMA: Final = '{"properties":{},"type":"object"}'


@attrs.frozen(kw_only=True)
class ToolSpec:
    """One entry of the reserved ``tools:`` list.

    ``input_schema`` is the tool's JSON Schema as canonical JSON text (sorted keys, no
    spaces), so the definition stays hashable. ``timeout`` (seconds) applies to every kind;
    ``url`` and ``secret_env`` belong to webhooks, ``target`` (E.164 number or SIP URI) to
    transfers.
    """

    name: str
    description: str
    kind: ToolKind
    input_schema: str = _DEFAULT_SCHEMA
    url: str | None = None
    timeout: float | None = None
    target: str | None = None
    secret_env: str | None = None
    """Name of the environment variable holding a webhook's HMAC signing secret."""

    def to_json(self) -> dict[str, object]:
        """The tool as it is written in front matter (absent fields left out)."""
        out: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "input_schema": json.loads(self.input_schema),
        }
        for key in ("url", "timeout", "target", "secret_env"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def check_tools(
    value: Any, node: yaml.Node, out: IssueCollector, first_line: int
) -> list[ToolSpec] | None:
    at = yaml_position(node.start_mark, first_line)
    if not isinstance(value, list) or not isinstance(node, yaml.SequenceNode):
        out.error("invalid_type", f"tools must be a list, not {type_name(value)}", *at)
        return None
    tools: list[ToolSpec] = []
    names: set[str] = set()
    ok = True
    for item, item_node in zip(value, node.value, strict=True):
        tool = _check_tool(item, item_node, out, first_line)
        if tool is None:
            ok = False
            continue
        if tool.name in names:
            out.error(
                "duplicate_key",
                f"tool name {tool.name!r} is used twice",
                *yaml_position(item_node.start_mark, first_line),
            )
            ok = False
            continue
        names.add(tool.name)
        tools.append(tool)
    return tools if ok else None


def _check_tool(
    item: Any, node: yaml.Node, out: IssueCollector, first_line: int
) -> ToolSpec | None:
    at = yaml_position(node.start_mark, first_line)
    if not isinstance(item, dict) or not isinstance(node, yaml.MappingNode):
        out.error("invalid_type", f"each tool must be a mapping, not {type_name(item)}", *at)
        return None
    errors_before = out.error_count
    positions: dict[str, tuple[int, int]] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        key_at = yaml_position(key_node.start_mark, first_line)
        if not isinstance(key, str) or key not in _TOOL_KEYS:
            out.error(
                "unknown_key",
                f"unknown tool key {shorten(key)!r}; known keys: {', '.join(_TOOL_KEYS)}",
                *key_at,
            )
            continue
        positions[key] = yaml_position(value_node.start_mark, first_line)

    def need(key: str, kind_name: str) -> None:
        if key not in item:
            out.error("missing_key", f"tool needs {key!r} ({kind_name})", *at)

    for key in ("name", "description", "kind"):
        need(key, "required")
    name, description, kind = item.get("name"), item.get("description"), item.get("kind")
    if "name" in item and (not isinstance(name, str) or not _TOOL_NAME_RE.fullmatch(name)):
        out.error(
            "invalid_value",
            "tool name must be a letter then up to 63 letters, digits, '_' or '-'",
            *positions["name"],
        )
    if "description" in item and (not isinstance(description, str) or not description.strip()):
        out.error(
            "invalid_value",
            "tool description must be a non-empty string",
            *positions["description"],
        )
    if "kind" in item and kind not in TOOL_KINDS:
        out.error(
            "invalid_value",
            f"tool kind {shorten(kind)!r} must be one of {', '.join(TOOL_KINDS)}",
            *positions["kind"],
        )
    schema_text = _DEFAULT_SCHEMA
    if "input_schema" in item:
        schema = item["input_schema"]
        where = positions["input_schema"]
        if not isinstance(schema, dict) or schema.get("type") != "object":
            out.error(
                "invalid_value",
                "tool input_schema must be a JSON Schema mapping with type: object",
                *where,
            )
        else:
            try:
                schema_text = json.dumps(
                    schema, sort_keys=True, separators=(",", ":"), allow_nan=False
                )
            except (TypeError, ValueError):
                out.error(
                    "invalid_value", "tool input_schema must contain only JSON values", *where
                )
    url, timeout, target = item.get("url"), item.get("timeout"), item.get("target")
    secret_env = item.get("secret_env")
    if "timeout" in item:
        low, high = _TOOL_TIMEOUT_RANGE
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            out.error(
                "invalid_type", "tool timeout must be a number of seconds", *positions["timeout"]
            )
        elif not low <= timeout <= high:
            out.error(
                "out_of_range",
                f"tool timeout {timeout} is outside {low} to {high} seconds",
                *positions["timeout"],
            )
    if kind == "webhook":
        need("url", "a webhook needs a URL")
        need("secret_env", "a webhook needs the variable holding its signing secret")
        if "url" in item:
            problem = check_webhook_url(url) if isinstance(url, str) else "must be a string"
            if problem is not None:
                out.error("invalid_value", f"webhook url {problem}", *positions["url"])
        if "secret_env" in item and (
            not isinstance(secret_env, str) or not _ENV_NAME_RE.fullmatch(secret_env)
        ):
            out.error(
                "invalid_value",
                "webhook secret_env must be an environment variable name (A-Z, 0-9, _)",
                *positions["secret_env"],
            )
    if kind == "transfer":
        need("target", "a transfer needs a target")
        if "target" in item and (
            not isinstance(target, str) or not _TRANSFER_TARGET_RE.fullmatch(target)
        ):
            out.error(
                "invalid_value",
                "transfer target must be an E.164 number (+15551234567) or a sip: URI",
                *positions["target"],
            )
    if kind in TOOL_KINDS:
        for key in ("url", "target", "secret_env"):
            allowed = (kind == "webhook" and key in ("url", "secret_env")) or (
                kind == "transfer" and key == "target"
            )
            if key in item and not allowed:
                out.error(
                    "invalid_value",
                    f"tool key {key!r} does not apply to kind {kind}",
                    *positions[key],
                )
    if out.error_count > errors_before:
        return None
    return ToolSpec(
        name=str(name),
        description=str(description),
        kind=_TOOL_KIND_OF[kind],  # kind is one of TOOL_KINDS (checked above)
        input_schema=schema_text,
        url=url,
        timeout=None if timeout is None else float(timeout),
        target=target,
        secret_env=secret_env,
    )
