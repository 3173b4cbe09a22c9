"""Config schemas declared once: every key's type, default, bounds or choices, and part in the config hash.

A schema is a dict of key -> `Key` (one setting) or dict (a section of settings). From it come the
defaults (`defaults`), the type checks while a YAML mapping is merged over them (`merge`), the value
checks of the merged config (`check_values`) and what a config hash leaves out (`unhashed`,
`hash_neutral`). Errors read `<key> must be <what>, got <value>`. Plain Python on purpose: offline
inference imports the model config's schema (models/config_schema.py); the pipeline config has its own
(pipeline/config.py).
"""
import copy
import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from core.errors import InputError


class ConfigError(InputError):
    """A bad config or override; the message starts with the config file (CLIs: `error: <file>: <problem>`, exit 2)."""


REQUIRED = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()  # a key without a default
_ALWAYS = type("Always", (), {"__repr__": lambda self: "ALWAYS"})()  # hashed whatever its value
TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
              dict: "a mapping"}


@dataclass(frozen=True)
class Key:
    """One setting. `type`: bool, int, float (any number; text such as "1e-4" is converted), str, list, dict,
    or a tuple of them. Beyond its type a value must meet the bounds (ge/gt/le/lt; a float is also finite),
    `choices` and `test` (described by `must`, which replaces the derived description); `convert` may
    normalise it (or raise ValueError with its own message)."""
    default: Any
    type: Any
    null: bool = False  # null is a valid value (its meaning is documented where the key is declared)
    default_from: Optional[str] = None  # null means: the loader fills this in (e.g. the file's stem)
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: Optional[tuple] = None
    test: Optional[Callable] = None
    must: Optional[str] = None
    note: Optional[str] = None  # appended to the derived description: ">= 0 (0: off)"
    convert: Optional[Callable] = None
    hashed: bool = True  # False: where outputs go or how fast they come, never what they are
    neutral: Any = _ALWAYS  # left out of the hash while it holds this value (keys added after runs finished)

    @property
    def types(self):
        return self.type if isinstance(self.type, tuple) else (self.type,)

    def type_text(self):
        return " or ".join(TYPE_NAMES[t] for t in self.types)

    def what(self):
        """What a value must be beyond its type ("in [0, 1)", "one of [...]"), or None."""
        if self.must:
            return self.must
        if self.choices:
            c = self.choices
            return f"{c[0]} or {c[1]}" if len(c) == 2 else f"one of {list(c)}"
        lo, hi = _first(self.ge, self.gt), _first(self.le, self.lt)
        if self.gt == 0 and hi is None:
            text = "a positive number"
        elif lo is not None and hi is not None:
            text = f"in {'[' if self.ge is not None else '('}{lo}, {hi}{']' if self.le is not None else ')'}"
        elif lo is not None:
            text = f"{'>=' if self.ge is not None else '>'} {lo}"
        elif hi is not None:
            text = f"{'<=' if self.le is not None else '<'} {hi}"
        else:
            return None
        return f"{text} ({self.note})" if self.note else text

    def describe(self):
        """The text after "must be" when a value is refused."""
        what = self.what()
        if not self.null:
            return what or self.type_text()
        if what is None:
            what = self.type_text()
        elif not (self.must or self.choices or what.startswith(("a ", "an "))):
            what = f"{self.type_text()} {what}"  # "an integer >= 1"
        return what if what.startswith("null") else f"null or {what}"


def _first(*values):
    return next((v for v in values if v is not None), None)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _typed(key, v):
    """`v` as a value of the key's type (numbers given as text converted), or None if it is not one."""
    for t in key.types:
        if t is bool and isinstance(v, bool) or t is int and _is_int(v) or t is dict and isinstance(v, dict):
            return v
        if t is float and (_is_int(v) or isinstance(v, float)):
            return v
        if t is float and isinstance(v, str) and str not in key.types:
            try:
                return float(v)  # YAML 1.1 reads 1e-4 (an exponent without a dot) as text
            except ValueError:
                pass
        if t is str and isinstance(v, str) or t is list and isinstance(v, (list, tuple)):
            return v
    return None


def check_type(name, key, value):
    """A given value of key `name`, type-checked (a dict key's null is an empty mapping)."""
    if value is None:
        if key.null or key.default_from:
            return None
        if key.types == (dict,):
            return {}
    else:
        typed = _typed(key, value)
        if typed is not None:
            return typed
    if key.null:
        raise ConfigError(f"{name} must be {key.describe()}, got {value!r}")
    raise ConfigError(f"{name} must be {key.type_text()}, got {value!r} ({type(value).__name__})")


def check_value(name, key, value):
    """`value` (type-checked) after `convert`, if it meets the key's bounds, choices and test; else ConfigError."""
    if value is None and (key.null or key.default_from):
        return value
    if key.convert:
        try:
            value = key.convert(value)
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if value is None and key.null:
            return value
    if not _meets(key, value):
        raise ConfigError(f"{name} must be {key.describe()}, got {value!r}")
    return value


def _meets(key, v):
    try:
        if float in key.types and isinstance(v, float) and not math.isfinite(v):
            return False
        bounds = ((key.ge, lambda b: v >= b), (key.gt, lambda b: v > b), (key.le, lambda b: v <= b),
                  (key.lt, lambda b: v < b))
        if not all(op(b) for b, op in bounds if b is not None):
            return False
        if key.choices is not None and v not in key.choices:
            return False
        return key.test is None or bool(key.test(v))
    except TypeError:  # a test meeting a value it cannot compare (a list of text where numbers belong)
        return False


def unknown_key_message(prefix, unknown, valid):
    """The first unknown key, the close ones (did you mean) and the valid ones of its section."""
    key = str(unknown[0])
    close = difflib.get_close_matches(key, [str(k) for k in valid], n=3)
    hint = f" (did you mean {[prefix + c for c in close]}?)" if close else ""
    return (f"unknown config key {prefix + key!r}{hint}; valid keys in {prefix.rstrip('.') or 'the top level'}: "
            f"{sorted(valid)}")


def merge(schema, update, prefix="", unknown=unknown_key_message):
    """The defaults of `schema` with `update` (a YAML mapping) over them, every given value type-checked.

    Unknown keys: ConfigError(unknown(prefix, unknown keys, valid keys)). REQUIRED keys not given stay out
    (`missing` lists them)."""
    if update is None:  # an empty section (`train:` with every line commented out)
        update = {}
    if not isinstance(update, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping (key: value lines), got {update!r}")
    bad = [k for k in update if k not in schema]
    if bad:
        raise ConfigError(unknown(prefix, bad, list(schema)))
    out = defaults(schema)
    for k, value in update.items():
        spec = schema[k]
        if isinstance(spec, dict):
            out[k] = merge(spec, value, f"{prefix}{k}.", unknown)
        else:
            out[k] = check_type(prefix + k, spec, copy.deepcopy(value))
    return out


def missing(schema, cfg):
    """The REQUIRED keys of a section that `cfg` (merged) lacks: its owner says what they are for."""
    return [k for k, spec in schema.items() if isinstance(spec, Key) and spec.default is REQUIRED and k not in cfg]


def check_values(schema, cfg, prefix=""):
    """Check (and `convert`) every value of a merged config in declaration order; ConfigError on the first bad one."""
    for k, spec in schema.items():
        if isinstance(spec, dict):
            check_values(spec, cfg[k], f"{prefix}{k}.")
        elif k in cfg:
            cfg[k] = check_value(prefix + k, spec, cfg[k])
    return cfg


def defaults(schema):
    """The nested mapping of every default (REQUIRED keys left out)."""
    out = {}
    for k, spec in schema.items():
        if isinstance(spec, dict):
            out[k] = defaults(spec)
        elif spec.default is not REQUIRED:
            out[k] = copy.deepcopy(spec.default)
    return out


def _leaves(schema, keys=()):
    for k, spec in schema.items():
        if isinstance(spec, dict):
            yield from _leaves(spec, keys + (k,))
        else:
            yield keys + (k,), spec


def unhashed(schema):
    """Key paths a config hash leaves out: they move outputs around without changing them."""
    return {keys for keys, spec in _leaves(schema) if not spec.hashed}


def hash_neutral(schema):
    """Key path -> the value under which it is left out of the hash (it reproduces the behaviour from before it)."""
    return {keys: spec.neutral for keys, spec in _leaves(schema) if spec.neutral is not _ALWAYS}
