"""`--config FILE`: a command's options kept in a YAML or TOML file, and `--print-config`.

Every option of the command is a key, spelled like the flag without its dashes (`num-concurrent`,
or `num_concurrent`); a switch such as `--no-prefix-caching` takes `true` or `false`, a repeatable
option (`--cors-origin`) a list. The precedence is: a flag given on the command line, then the
file, then the built-in default. The file is read by the same rules argparse applies to a flag
(types, choices), and an unknown key is an error that lists the known ones, so a typo never goes
unnoticed.

    # chatstream.yaml
    model: smollm2
    port: 8000
    num-concurrent: 8
    cors-origin: [https://chat.example.com]

`--print-config` prints the effective options in the same format (YAML), ready to be saved and
passed back with `--config`; secrets (an API key, a session secret, a password in a URL) are left
out, with a comment saying they are set.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# Options that belong to the file machinery itself, never keys of a file.
NOT_KEYS = frozenset({"help", "config", "print_config", "model_positional"})
_SECRET_DESTS = ("api_key", "secret", "password")
_URL_PASSWORD = re.compile(r"://[^/@:]*:[^/@]+@")


class ConfigFileError(ValueError):
    """The file cannot be read, or a key or value in it is wrong (the message names it)."""


def add_config_arguments(parser: argparse.ArgumentParser, *, print_config: bool = True) -> None:
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="read options from a YAML or TOML file (flags given here win over it)")
    if print_config:
        parser.add_argument("--print-config", action="store_true",
                            help="print the effective options (defaults, the file, the flags) as YAML and exit")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The file's top-level mapping; `.toml` is TOML, anything else YAML (YAML also reads JSON)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - the parsers' own errors say where the syntax is wrong
        raise ConfigFileError(f"{path} is not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: "
                              f"{exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path} must hold a mapping of option names to values, not a {type(data).__name__}")
    return data


def option_actions(parsers: Sequence[argparse.ArgumentParser]) -> dict[str, argparse.Action]:
    """The options a file may set, by dest, from the command's parser and its parents."""
    actions: dict[str, argparse.Action] = {}
    for parser in parsers:
        for action in parser._actions:  # argparse has no public way to list them
            if isinstance(action, argparse._SubParsersAction) or action.dest in NOT_KEYS:
                continue
            if action.dest == argparse.SUPPRESS or action.help == argparse.SUPPRESS and not action.option_strings:
                continue
            actions.setdefault(action.dest, action)
    return actions


def key_name(action: argparse.Action) -> str:
    """The key that names `action` in a file: its long flag without dashes, else its dest."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    return longs[0][2:] if longs else action.dest.replace("_", "-")


def explicit_dests(parsers: Sequence[argparse.ArgumentParser], argv: Sequence[str]) -> set[str]:
    """The dests given on the command line: `argv` parsed again with every default suppressed."""
    top = parsers[0]
    saved: list[tuple[argparse.Action, Any]] = []
    saved_defaults = []
    for parser in _all_parsers(top):
        saved_defaults.append((parser, dict(parser._defaults)))
        parser._defaults.clear()
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                saved.append((action, action.default))
                action.default = argparse.SUPPRESS
    try:
        namespace, _ = top.parse_known_args(list(argv))
    finally:
        for action, default in saved:
            action.default = default
        for parser, defaults in saved_defaults:
            parser._defaults.update(defaults)
    return set(vars(namespace))


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.extend(_all_parsers(sub))
    return found


def apply_config_file(args: argparse.Namespace, parsers: Sequence[argparse.ArgumentParser],
                      data: dict[str, Any], explicit: set[str], source: str) -> None:
    """Set on `args` every option of `data` that was not given on the command line."""
    actions = option_actions(parsers)
    by_key: dict[str, argparse.Action] = {}
    for dest, action in actions.items():
        by_key[key_name(action)] = action
        by_key[dest] = action
        by_key[dest.replace("_", "-")] = action
    for key, value in data.items():
        action = by_key.get(str(key))
        if action is None:
            known = ", ".join(sorted({key_name(a) for a in actions.values()}))
            raise ConfigFileError(f"{source}: unknown option {key!r}; the options are: {known}")
        if action.dest in explicit:
            continue  # the flag given on the command line wins
        setattr(args, action.dest, convert_value(action, value, f"{source}: {key}"))


def convert_value(action: argparse.Action, value: Any, where: str) -> Any:
    """`value` from a file as the flag's own parsing would have given it, or ConfigFileError."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}: must be true or false, got {value!r}")
        return value
    if value is None:  # an option left unset (e.g. a repeatable one with no default) reads back unset
        return None
    if isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"):
        items = value if isinstance(value, list) else [value]
        return [_scalar(action, item, where) for item in items]
    return _scalar(action, value, where)


def _scalar(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, (dict, list)):
        raise ConfigFileError(f"{where}: must be a single value, got {value!r}")
    kind = action.type
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str)
        converted = _call(int, value, where) if ok else None
        if not ok:
            raise ConfigFileError(f"{where}: must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigFileError(f"{where}: must be a number, got {value!r}")
        converted = _call(float, value, where)
    elif kind is None:
        if isinstance(value, bool):
            raise ConfigFileError(f"{where}: must be a text, got {value!r}")
        converted = str(value)
    else:
        converted = _call(kind, value if isinstance(value, str) else str(value), where)
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigFileError(f"{where}: must be one of {choices}, got {value!r}")
    return converted


def _call(kind: Any, value: Any, where: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigFileError(f"{where}: invalid value {value!r} ({exc})") from None


def effective_config(args: argparse.Namespace, parsers: Sequence[argparse.ArgumentParser]) -> dict[str, Any]:
    """Every option's value in effect, by its file key (what `--print-config` shows)."""
    values: dict[str, Any] = {}
    for dest, action in option_actions(parsers).items():
        if hasattr(args, dest):
            values[key_name(action)] = getattr(args, dest)
    return values


def is_secret(key: str, value: Any) -> bool:
    dest = key.replace("-", "_")
    named = any(dest == s or dest.endswith("_" + s) for s in _SECRET_DESTS)
    return value is not None and (named or isinstance(value, str) and bool(_URL_PASSWORD.search(value)))


def render_config(values: dict[str, Any]) -> str:
    """`values` as YAML that `--config` reads back; secrets become comments saying they are set."""
    import yaml

    shown = {k: v for k, v in values.items() if not is_secret(k, v)}
    text = yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, default_flow_style=False)
    hidden = [k for k in values if k not in shown]
    return text + "".join(f"# {k}: (set; not shown)\n" for k in hidden)


def print_config(args: argparse.Namespace, parsers: Sequence[argparse.ArgumentParser]) -> None:
    sys.stdout.write(render_config(effective_config(args, parsers)))
    sys.stdout.flush()
