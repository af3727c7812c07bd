"""The command lines of the server and the workers: parsers that take no abbreviated flags and
whose ``--help`` says each setting's type and default.

:func:`service.core.settings.add_settings_arguments` adds one flag per setting;
:func:`settings_parser` makes the parser and then names each of those flags' values by type
(``PATH``, ``HOST:PORT``, ``SECONDS``, ``SIZE``) and appends the default the setting takes when
neither the flag nor its variable is given.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from service.core.setting_values import GiB, MiB, parse_bool, parse_size
from service.core.settings import ENV_PREFIX, FIELDS, FieldSpec, Settings, add_settings_arguments


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; a flag's default appended to its help when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text.lower()
            or default in (None, False, "", argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def settings_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An :class:`argparse.ArgumentParser` with the settings' flags, abbreviations off."""
    parser = argparse.ArgumentParser(allow_abbrev=False, formatter_class=HelpFormatter, **kwargs)
    add_settings_arguments(parser)
    describe_settings_flags(parser, os.environ)
    return parser


def describe_settings_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    specs = {spec.name: spec for spec in FIELDS}
    defaults = setting_defaults(environ)
    for action in parser._actions:
        spec = specs.get(action.dest)
        if spec is None or not action.option_strings:
            continue
        action.metavar = metavar_of(spec)
        default = defaults.get(spec.name)
        if default not in (None, ""):
            action.help = f"{action.help} (default: {default})".replace("%", "%%")


def metavar_of(spec: FieldSpec) -> str:
    if spec.parse is parse_bool:
        return "BOOL"
    if spec.parse is parse_size:
        return "SIZE"
    if spec.name.endswith("_address"):
        return "HOST:PORT"
    if spec.name.endswith(("_url", "_uri")):
        return "URL"
    if spec.name.endswith(("_file", "_dir", "_cert", "_key", "_ca")):
        return "PATH"
    if spec.parse is float:
        return "SECONDS"
    if spec.parse is int:
        return "SECONDS" if spec.name.endswith(("_timeout", "_limit")) else "INT"
    return "TEXT"


def setting_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """What each setting is when neither its flag nor its variable is given, as text: the
    settings :meth:`Settings.load` makes from the environment without any ``TEMPERING_*``."""
    untouched = {key: value for key, value in environ.items() if not key.startswith(ENV_PREFIX)}
    settings = Settings.load(untouched)
    return {spec.name: _text(spec, getattr(settings, spec.name)) for spec in FIELDS}


def _text(spec: FieldSpec, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if spec.parse is parse_size and value:
        for unit, size in (("G", GiB), ("M", MiB)):
            if value % size == 0:
                return f"{value // size}{unit}"
    return "" if value is None else str(value)
