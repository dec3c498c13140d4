"""Configs from the command line: ``--set key=value``, ``--config FILE.toml``, ``--grid key=v1,v2``,
``--seeds 0-9``, and the round trip ``Config`` <-> plain dict (run folders, Ray tasks).

Every value is checked against the type annotation of the ``Config`` field it sets (``int``,
``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, nested dataclasses
through dotted keys ``model.width=32``); a bad key or value raises :class:`UsageError` naming the
field and what was expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import pathlib
import types
import typing
from typing import Any

from .errors import UsageError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _hints(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the defaults' types
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = type(f.default)
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                out[f.name] = type(f.default_factory())  # type: ignore[misc]
            else:
                out[f.name] = Any
        return out


def _type_name(tp) -> str:
    if tp is type(None):
        return "none"
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"a comma-separated list of {_type_name(args[0]) if args else 'values'}"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a table of {tp.__name__} fields"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _split_list(text: str) -> list[str]:
    """``"1,2,3"``, ``"[1, 2, 3]"`` or ``"(1,2)"`` -> ``["1", "2", "3"]`` (commas inside brackets kept)."""
    text = text.strip()
    if len(text) >= 2 and text[0] + text[-1] in ("[]", "()"):
        text = text[1:-1]
    return [p.strip() for p in split_top_level(text) if p.strip() != ""]


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    parts, depth, cur, quote = [], 0, [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def coerce(value, tp, where: str, finite: bool = True):
    """``value`` (a command-line string, or a TOML/JSON value) as type ``tp``; :class:`UsageError`
    ``"<where> expects <type>, got <value>"`` otherwise. With ``finite`` (the default) a float that is
    NaN or infinite is refused; a Config field that means to take them says so with
    ``dataclasses.field(metadata={"nonfinite": True})``."""

    def bad():
        return UsageError(f"{where} expects {_type_name(tp)}, got {value!r}")

    if tp is Any or tp is object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        for choice in typing.get_args(tp):
            try:
                v = coerce(value, type(choice), where, finite)
            except UsageError:
                continue
            if v == choice:
                return choice
        raise bad()
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))
        ):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where, finite)
            except UsageError as exc:
                if "finite" in str(exc):
                    raise
                continue
        raise bad()
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        raise bad()
    if origin in (tuple, list) or tp in (tuple, list):
        args = typing.get_args(tp)
        items = _split_list(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise bad()
        if len(args) == 2 and args[1] is Ellipsis:
            elem_types = [args[0]] * len(items)
        elif args and Ellipsis not in args:
            if len(args) != len(items):
                raise UsageError(f"{where} expects {len(args)} values, got {value!r}")
            elem_types = list(args)
        else:
            elem_types = [Any] * len(items)
        out = [coerce(v, t, f"{where}[{i}]", finite) for i, (v, t) in enumerate(zip(items, elem_types))]
        return list(out) if (origin is list or tp is list) else tuple(out)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return apply_overrides(tp(), value, where.rsplit(".", 1)[0] + "." + tp.__name__)
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise bad() from None
                if f.is_integer():
                    return int(f)
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value.strip())
            except ValueError:
                raise bad() from None
        else:
            raise bad()
        if finite and not math.isfinite(out):
            raise UsageError(f"{where} expects a finite number, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    if isinstance(value, str):  # an unknown annotation: best effort through JSON
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def accepts_nonfinite(cls, name: str) -> bool:
    """Whether Config field ``name`` takes NaN/inf (``dataclasses.field(metadata={"nonfinite": True})``)."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    return bool(f is not None and f.metadata.get("nonfinite", False))


def field_names(config) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]


def apply_overrides(config, overrides: dict, label: str):
    """A copy of ``config`` with ``overrides`` ({dotted key: value}) applied and type-checked;
    ``label`` (e.g. ``"antidistill.Config"``) prefixes error messages."""
    cls = type(config)
    hints = _hints(cls)
    names = field_names(config)
    changes: dict[str, Any] = {}
    nested: dict[str, dict] = {}
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        if head not in names:
            raise UsageError(f"unknown config key {key!r} for {label}; valid keys: {', '.join(names)}")
        if rest:
            if not dataclasses.is_dataclass(getattr(config, head)):
                raise UsageError(f"{label}.{head} is not a nested config, so {key!r} is not a valid key")
            nested.setdefault(head, {})[rest] = value
        elif isinstance(value, dict) and dataclasses.is_dataclass(getattr(config, head)):
            nested.setdefault(head, {}).update(value)
        else:
            changes[head] = coerce(
                value, hints.get(head, Any), f"{label}.{head}", not accepts_nonfinite(cls, head)
            )
    for head, sub in nested.items():
        inner = changes.get(head, getattr(config, head))
        changes[head] = apply_overrides(inner, sub, f"{label}.{head}")
    return dataclasses.replace(config, **changes) if changes else config


def parse_set(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "b.c=x"]`` -> ``{"a": "1", "b.c": "x"}``."""
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--set expects key=value, got {item!r}")
        if key.strip() in out:
            raise UsageError(
                f"--set {key.strip()} given twice ({out[key.strip()]!r} and {value.strip()!r}); give each key once"
            )
        out[key.strip()] = value.strip()
    return out


def load_toml(path, experiment: str) -> dict:
    """Keys of a TOML config file: top-level keys, or the table ``[<experiment>]`` (or ``[config]``)."""
    import tomllib

    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: not valid TOML ({exc})") from None
    for table in (experiment, "config"):
        if isinstance(data.get(table), dict) and len(data) == 1:
            return data[table]
    return data


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def to_dict(config) -> dict:
    """A plain JSON-able dict of a (possibly nested) config dataclass; tuples become lists."""
    from blojax.experiments.common import to_jsonable

    return to_jsonable(config)


def from_dict(cls, data: dict, label: str):
    """Rebuild a ``Config`` from :func:`to_dict` output (type-checked)."""
    return apply_overrides(cls(), data, label)


def version() -> str:
    """The installed blojax version (part of every run's identity)."""
    try:
        import blojax

        return str(blojax.__version__)
    except Exception:  # noqa: BLE001
        return "unknown"


def fingerprint(experiment: str, config) -> str:
    """Identity of a run: sha256 of the experiment name, the resolved config and the blojax version
    (the data files read are checked separately, in every checkpoint and in results.json)."""
    blob = json.dumps(
        {"experiment": experiment, "config": to_dict(config), "blojax": version()}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def diff(a: dict, b: dict) -> list[str]:
    """``["key: <in a> there, <in b> asked", ...]`` between two flattened config dicts."""
    fa, fb = flatten(a), flatten(b)
    return [
        f"{k}: {fa.get(k)!r} there, {fb.get(k)!r} asked"
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k)
    ]


# ------------------------------------------------------------------------------------ sweeps
def parse_seeds(text: str | None) -> list[int] | None:
    """``"0-9"`` -> 0..9; ``"0,3,7"``; ``"0-3,10"``."""
    if text is None:
        return None
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i or lo_i < 0:
                    raise ValueError
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
                if seeds[-1] < 0:
                    raise ValueError
        except ValueError:
            raise UsageError(f"--seeds expects a range like 0-9 or a list like 0,3,7, got {text!r}") from None
    return list(dict.fromkeys(seeds))


def parse_grid(items: list[str] | None, config, label: str) -> dict[str, list]:
    """``["K=1,10,100", "lr=0.1,0.01"]`` -> ``{"K": [1, 10, 100], "lr": [0.1, 0.01]}``, each value
    type-checked against the config field (a list-valued field takes bracketed values ``[1,2],[3]``)."""
    grid: dict[str, list] = {}
    for item in items or []:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--grid expects key=v1,v2,..., got {item!r}")
        if key in grid:
            raise UsageError(f"--grid {key} given twice; list all its values in one --grid {key}=v1,v2,...")
        raw = [v.strip() for v in split_top_level(values) if v.strip() != ""]
        if not raw:
            raise UsageError(f"--grid {key}: no values given")
        parsed = []
        for v in raw:
            changed = apply_overrides(config, {key: v}, label)
            parsed.append(_get(changed, key))
        grid[key] = parsed
    return grid


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def grid_points(base, grid: dict[str, list], seeds: list[int] | None, label: str) -> list[tuple[dict, Any]]:
    """The cartesian product of ``grid`` (and ``seeds``): ``[(assignment, config), ...]`` in a fixed
    order (grid keys as given, seeds innermost)."""
    keys = list(grid)
    axes = [grid[k] for k in keys]
    if seeds is not None:
        if "seed" not in field_names(base):
            raise UsageError(
                f"{label} has no 'seed' field, so --seeds does not apply; valid keys: {', '.join(field_names(base))}"
            )
        keys.append("seed")
        axes.append(seeds)
    points = []
    for values in itertools.product(*axes):
        assign = dict(zip(keys, values))
        points.append((assign, apply_overrides(base, assign, label)))
    return points
