"""Config files: parse and load (errors name the field path), dump, and the commented YAML
of `lionloop init`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lionloop.config.run import DERIVED_DEFAULTS, RunConfig
from lionloop.errors import ConfigError


def _format_error(err: ValidationError, source: str) -> str:
    """One message for every problem pydantic found: the first on the line that names the source,
    any others each on a line of its own (fixing one at a time took a run per problem)."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if path and (msg.startswith(f"{path}.") or msg.startswith(f"{path}:")):
            path = ""  # a section's own validator named the field path itself
        line = f"{path}: {msg}" if path else msg
        if line not in lines:
            lines.append(line)
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    return f"{source}: {len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines)


def _bad_text(s: str) -> str | None:
    """Why a string cannot be used (written to SQLite, hashed, used in a path), or None."""
    if "\x00" in s:
        return "contains a NUL character"
    for i, ch in enumerate(s):
        if "\ud800" <= ch <= "\udfff":
            return f"contains a lone UTF-16 surrogate (\\u{ord(ch):04x}) at character {i + 1}"
    return None


def _check_text(data: Any, path: str, source: str) -> None:
    """Every key and string value of a parsed config must be text a file or a hash can hold."""
    if isinstance(data, dict):
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and (why := _bad_text(k)):
                raise ConfigError(f"{source}: {sub!r}: the key {why}")
            _check_text(v, sub, source)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_text(v, f"{path}.{i}", source)
    elif isinstance(data, str) and (why := _bad_text(data)):
        raise ConfigError(f"{source}: {path}: {why}")


def parse_config(data: dict[str, Any] | None, source: str = "config") -> RunConfig:
    """Validate a config mapping; raise ConfigError naming the first bad field path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    _check_text(data, "", source)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (the last one used to win
    without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first given on line {first})"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path) -> RunConfig:
    """Read and validate a YAML config file: UTF-8, no duplicate keys, not empty."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {col})"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        # An empty or comment-only file silently ran every default: almost always a mistake.
        raise ConfigError(f"{path}: the file holds no settings (`lionloop init` writes one with every field)")
    return parse_config(data, str(path))


def dump_config(cfg: RunConfig) -> str:
    """YAML of a config as run; holds env var *names* only, never secrets."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def commented_yaml(model: BaseModel | None = None, indent: int = 0,
                   options: dict[str, BaseModel] | None = None, path: str = "") -> str:
    """The config as YAML with every field's description as a comment (for `lionloop init`).

    `options` maps a section to its plugin's options model instance (e.g. {"task": DatasetOptions(...)}):
    that section's `options` is then written field by field with their descriptions too.
    A field of DERIVED_DEFAULTS the config leaves unset (with its siblings there) is written as a
    comment: written out, it would pin a default that depends on another section."""
    model = model if model is not None else RunConfig()
    pad = "  " * indent
    lines: list[str] = []
    derived = {n for n in type(model).model_fields if f"{path}.{n}" in DERIVED_DEFAULTS}
    unset = derived and not derived & model.model_fields_set
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        here = f"{path}.{name}" if path else name
        if field.description:
            lines.append(f"{pad}# {field.description}")
        if name == "options" and options and path in options:
            value = options[path]
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.append(commented_yaml(value, indent + 1, options, here))
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            lines.append(f"{pad}{name}:")
            for key, sub in value.items():
                lines.append(f"{pad}  {key}:")
                lines.append(commented_yaml(sub, indent + 2, options, f"{here}.{key}"))
        else:
            dumped = yaml.safe_dump({name: _plain(value)}, default_flow_style=True, sort_keys=False, width=1000).strip()
            mark = "# " if unset and name in derived else ""
            lines.append(f"{pad}{mark}{dumped.removeprefix('{').removesuffix('}')}")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value
