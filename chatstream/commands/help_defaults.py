"""Every option's default in `--help`, for every subcommand, including options added later.

argparse's `ArgumentDefaultsHelpFormatter` shows a default only for options that have a help text
and repeats it when the text already names one; `show_defaults` instead walks the finished parser
tree once and appends `(default: ...)` to each option whose help does not mention its default yet.
"""

from __future__ import annotations

import argparse


def describe_default(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if isinstance(action, argparse._StoreFalseAction):
        return "on"
    default = action.default
    if default is None or default == []:
        return "none"
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return str(default)


def needs_default(action: argparse.Action) -> bool:
    """Options and optional positionals show a default; help, version and hidden ones do not."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
        return False
    if action.help == argparse.SUPPRESS or action.default is argparse.SUPPRESS:
        return False
    return bool(action.option_strings) or action.nargs in ("?", "*")


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append the default to the help of every option of `parser` and of its subcommands."""
    for action in parser._actions:  # argparse has no public way to walk its actions
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                show_defaults(sub)
            continue
        if not needs_default(action):
            continue
        text = action.help or ""
        if "default:" in text.lower():  # the text already says it (e.g. "(default: the model's own)")
            continue
        default = describe_default(action).replace("%", "%%")
        action.help = f"{text} (default: {default})" if text else f"(default: {default})"
