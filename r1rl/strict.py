"""The base of every config: strict models, and reading YAML with ``key.sub=value`` overrides.

Unknown keys are errors with a did-you-mean (or, for a key that moved, its new place); every
error names the key and is raised as a :class:`~r1rl.errors.UserError` before any work starts.
Floats are finite: ``inf`` and ``nan`` are refused wherever a number is asked for.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Tag, ValidationError, model_validator

from r1rl.errors import UserError, did_you_mean


class Strict(BaseModel):
    """Unknown keys are errors; floats are finite; a partly given section keeps the owner's other defaults.

    A stage may default a shared section differently (PPO logs every step, SFT's learning rate is
    2e-3): setting one key of that section (``log: {eval_every: 5}``) keeps the stage's defaults for
    the others, not the section class's.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _keep_section_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field in cls.model_fields.items():
            if isinstance(out.get(name), dict) and field.default_factory is not None:
                default = field.get_default(call_default_factory=True)
                if isinstance(default, BaseModel):
                    out[name] = {**default.model_dump(exclude_defaults=True), **out[name]}
        return out


C = TypeVar("C", bound=BaseModel)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text file (a YAML recipe is UTF-8 text)") from None
    except RecursionError:
        raise UserError(f"{p}: nested too deeply to be a config") from None
    except OSError as e:
        raise UserError(f"{p}: cannot read it ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of config keys at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = _parse_scalar(raw)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override {key!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _parse_scalar(raw: str) -> Any:
    """YAML's reading of ``raw``, plus the floats YAML 1.1 leaves as strings (``3e-4``)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def validate(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate ``data`` as ``cls``, turning the first error into a one-line :class:`UserError`."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raw_loc = tuple(err["loc"])
        loc = ".".join(str(x) for x in _shown_loc(cls, raw_loc))
        if err["type"] == "extra_forbidden":
            key = str(raw_loc[-1])
            moved = _moved(cls, loc, err.get("input"))
            if moved is not None:
                raise UserError(f"{source}: config key {moved[0]!r} has moved to {moved[1]!r}") from None
            fields = _fields_at(cls, raw_loc[:-1])
            hint = did_you_mean(key, fields)
            raise UserError(f"{source}: unknown config key {loc!r}{hint}") from None
        if err["type"] == "missing":
            raise UserError(f"{source}: missing required config key {loc!r}") from None
        if err["type"] == "union_tag_invalid":
            tags = [t.strip(" '") for t in str(err["ctx"]["expected_tags"]).split(",")]
            tag = str(err["ctx"]["tag"])
            raise UserError(f"{source}: unknown {loc}.name {tag!r}{did_you_mean(tag, tags)}") from None
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not loc:  # a check across several keys
            raise UserError(f"{source}: {msg}") from None
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        raise UserError(f"{source}: bad value for {loc!r}: {msg}{got}") from None


def _moved(cls: type[BaseModel], loc: str, value: Any) -> tuple[str, str] | None:
    """``(old key, new place)`` when ``loc`` is a key (or a section of keys) the config type moved."""
    moved: dict[str, str] = getattr(cls, "MOVED", {})
    if loc in moved:
        return loc, moved[loc]
    if isinstance(value, dict):  # a whole former section, e.g. `train: {lr: ...}`: name its first key
        for sub in value:
            if f"{loc}.{sub}" in moved:
                return f"{loc}.{sub}", moved[f"{loc}.{sub}"]
    return None


def _member(annotation: Any, tag: Any) -> Any:
    """The model a tagged-union annotation resolves to for ``tag`` (or ``None`` for a plain model):
    the member whose ``name`` field is that literal, or the one a callable discriminator tags so."""
    for member in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(member) is Annotated:
            inner, *meta = typing.get_args(member)
            if any(isinstance(m, Tag) and m.tag == tag for m in meta):
                return inner
            found = _member(inner, tag)
            if found is not None:
                return found
            continue
        fields = getattr(member, "model_fields", None)
        if fields and "name" in fields and tag in typing.get_args(fields["name"].annotation):
            return member
    return None


def _walk(cls: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, list[Any]]:
    """Follow ``loc`` from ``cls``: the model reached and the loc without union tags."""
    model: Any = cls
    shown: list[Any] = []
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(part, int) and typing.get_origin(model) is list:  # an item of a list of sections
            shown.append(part)
            model = _unwrap(typing.get_args(model)[0])
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            member = _member(model, part)  # a union's tag: pydantic puts it in the loc
            if member is None:
                return None, shown + [part, *parts]
            model = member
            continue
        shown.append(part)
        model = _unwrap(fields[part].annotation)
    return model, shown


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``; a tagged union stays as it is (resolved by its tag)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _shown_loc(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[Any]:
    return _walk(cls, loc)[1]


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model, _ = _walk(cls, loc)
    if model is not None and not hasattr(model, "model_fields"):
        model = _member(model, loc[-1]) if loc else None
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def load_config(cls: type[C], path: str | Path, overrides: list[str] | None = None) -> C:
    data = apply_overrides(load_yaml(path), overrides or [])
    return validate(cls, data, source=str(path))


def dump_config(cfg: BaseModel) -> str:
    return str(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
