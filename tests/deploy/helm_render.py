"""A small renderer for the subset of Helm's Go templates that deploy/helm/tempering uses.

There is no ``helm`` binary on the build machines (Debian does not package it and nothing else
may be downloaded), so the chart is rendered here, in pure Python, and the result parsed as
YAML. The renderer is strict where Helm is lenient, so that a template it cannot render the way
Helm would fails the tests instead of passing silently:

- only these actions: ``if`` / ``else if`` / ``else`` / ``end``, ``with`` / ``else`` / ``end``,
  ``define`` and comments; ``range``, ``template``, ``block`` and variables other than ``$``
  are refused;
- only these functions: ``include``, ``quote``, ``default``, ``required``, ``fail``, ``toYaml``,
  ``indent``, ``nindent``, ``printf`` (``%s`` of strings, ``%v``), ``trunc``, ``trimSuffix``,
  ``contains``, ``sha256sum``, ``not``, ``and``, ``or``, ``eq``, ``ne``;
- a value the templates read must exist in the values (Helm would print nothing for a typo);
- numbers print as Helm prints them (values are float64 there): whole numbers below one
  million as integers; anything Helm would print in scientific notation is refused.

Whitespace trimming (``{{-`` and ``-}}``) follows text/template exactly.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(Exception):
    """The template uses something this renderer does not support, or fails as Helm would."""


# --------------------------------------------------------------------------------------------
# Lexing: text and actions, with text/template's trim markers applied.

_WHITESPACE = " \t\r\n"


@dataclass
class _Action:
    source: str
    where: str


def _lex(text: str, name: str) -> list[str | _Action]:
    items: list[str | _Action] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk = chunk.lstrip(_WHITESPACE)
        if start < 0:
            items.append(chunk)
            return items
        inner = start + 2
        trim_left = text.startswith("- ", inner) or text.startswith("-\n", inner)
        if trim_left:
            chunk = chunk.rstrip(_WHITESPACE)
            inner += 1
        items.append(chunk)
        end = _action_end(text, inner, name)
        body = text[inner:end]
        trim_next = body.endswith(" -") or body.endswith("\n-")
        if trim_next:
            body = body[:-1]
        line = text.count("\n", 0, start) + 1
        items.append(_Action(body.strip(), f"{name}:{line}"))
        pos = end + 2


def _action_end(text: str, pos: int, name: str) -> int:
    quote: str | None = None
    i = pos
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 2
                continue
            if char == quote:
                quote = None
        elif char in '"`':
            quote = char
        elif text.startswith("}}", i):
            return i
        i += 1
    raise TemplateError(f"{name}: unclosed action")


# --------------------------------------------------------------------------------------------
# Expressions: pipelines of commands.

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<field>\.[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*|\.)
    | (?P<var>\$(?:\.[A-Za-z_][\w]*)*)
    | (?P<ident>[A-Za-z_][\w]*)
    | (?P<punct>[()|])
    )""",
    re.VERBOSE,
)


@dataclass
class _Literal:
    value: Any


@dataclass
class _Field:
    root: str  # "." or "$"
    path: tuple[str, ...]


@dataclass
class _Ident:
    name: str


@dataclass
class _Pipeline:
    commands: list[list[Any]]


def _tokenize(source: str, where: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    source = source.rstrip()
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"{where}: cannot parse {source[pos:]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _parse_pipeline(source: str, where: str) -> _Pipeline:
    tokens = _tokenize(source, where)
    pipeline, rest = _pipeline(tokens, where)
    if rest:
        raise TemplateError(f"{where}: unexpected {rest[0][1]!r} in {source!r}")
    return pipeline


def _pipeline(tokens: list[tuple[str, str]], where: str) -> tuple[_Pipeline, list]:
    commands: list[list[Any]] = [[]]
    while tokens:
        kind, text = tokens[0]
        if kind == "punct" and text == ")":
            break
        tokens = tokens[1:]
        if kind == "punct" and text == "|":
            if not commands[-1]:
                raise TemplateError(f"{where}: empty command before '|'")
            commands.append([])
        elif kind == "punct" and text == "(":
            inner, tokens = _pipeline(tokens, where)
            if not tokens or tokens[0][1] != ")":
                raise TemplateError(f"{where}: unclosed '('")
            tokens = tokens[1:]
            commands[-1].append(inner)
        elif kind == "string":
            commands[-1].append(_Literal(json.loads(text)))
        elif kind == "raw":
            commands[-1].append(_Literal(text[1:-1]))
        elif kind == "number":
            commands[-1].append(_Literal(float(text) if "." in text else int(text)))
        elif kind == "field":
            commands[-1].append(_Field(".", tuple(p for p in text.split(".") if p)))
        elif kind == "var":
            commands[-1].append(_Field("$", tuple(p for p in text[1:].split(".") if p)))
        elif text in ("true", "false"):
            commands[-1].append(_Literal(text == "true"))
        elif text == "nil":
            commands[-1].append(_Literal(None))
        else:
            commands[-1].append(_Ident(text))
    if not commands[-1]:
        raise TemplateError(f"{where}: empty pipeline")
    return _Pipeline(commands), tokens


# --------------------------------------------------------------------------------------------
# Block structure.


@dataclass
class _Output:
    pipeline: _Pipeline
    where: str


@dataclass
class _If:
    branches: list[tuple[_Pipeline, list[Any]]]
    otherwise: list[Any]


@dataclass
class _With:
    pipeline: _Pipeline
    body: list[Any]
    otherwise: list[Any]


_COMMENT = re.compile(r"^/\*.*\*/$", re.DOTALL)
_UNSUPPORTED = ("range", "template", "block", "break", "continue")


def _parse(items: list[str | _Action], defines: dict[str, list[Any]]) -> list[Any]:
    nodes, stop, rest = _parse_block(list(items), defines, top=True)
    assert stop is None
    assert not rest
    return nodes


def _parse_block(
    items: list[str | _Action], defines: dict[str, list[Any]], top: bool = False
) -> tuple[list[Any], _Action | None, list[str | _Action]]:
    nodes: list[Any] = []
    while items:
        item = items.pop(0)
        if isinstance(item, str):
            if item:
                nodes.append(item)
            continue
        source, where = item.source, item.where
        keyword = source.split(None, 1)[0] if source else ""
        if _COMMENT.match(source):
            continue
        if keyword in ("end", "else"):
            if top:
                raise TemplateError(f"{where}: {keyword} without an open block")
            return nodes, item, items
        if keyword in _UNSUPPORTED or re.match(r"^\$\w*\s*:?=", source):
            raise TemplateError(f"{where}: {keyword or source!r} is not supported here")
        if keyword == "define":
            name = json.loads(source[len("define") :].strip())
            body, stop, items = _parse_block(items, defines)
            if stop is None or stop.source != "end":
                raise TemplateError(f"{where}: define {name!r} is not closed by end")
            defines[name] = body
        elif keyword == "if":
            condition = _parse_pipeline(source[2:], where)
            branches: list[tuple[_Pipeline, list[Any]]] = []
            otherwise: list[Any] = []
            while True:
                body, stop, items = _parse_block(items, defines)
                if stop is None:
                    raise TemplateError(f"{where}: if without end")
                branches.append((condition, body))
                if stop.source == "end":
                    break
                rest = stop.source[len("else") :].strip()
                if rest.startswith("if "):
                    condition = _parse_pipeline(rest[3:], stop.where)
                    continue
                if rest:
                    raise TemplateError(f"{stop.where}: 'else {rest}' is not supported")
                otherwise, stop, items = _parse_block(items, defines)
                if stop is None or stop.source != "end":
                    raise TemplateError(f"{where}: if/else without end")
                break
            nodes.append(_If(branches, otherwise))
        elif keyword == "with":
            pipeline = _parse_pipeline(source[4:], where)
            body, stop, items = _parse_block(items, defines)
            otherwise = []
            if stop is not None and stop.source == "else":
                otherwise, stop, items = _parse_block(items, defines)
            if stop is None or stop.source != "end":
                raise TemplateError(f"{where}: with without end")
            nodes.append(_With(pipeline, body, otherwise))
        else:
            nodes.append(_Output(_parse_pipeline(source, where), where))
    if not top:
        return nodes, None, items
    return nodes, None, []


# --------------------------------------------------------------------------------------------
# Evaluation.


def truthy(value: Any) -> bool:
    """text/template's truth: false, 0, nil and empty strings and collections are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | dict | tuple):
        return bool(value)
    return True


def go_string(value: Any) -> str:
    """How ``{{ value }}`` prints in Helm (``fmt``'s ``%v``, numbers being float64)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if float(value).is_integer():
            if abs(value) >= 1e6:
                raise TemplateError(
                    f"{value} would print in scientific notation ({float(value):.0e}) in Helm"
                    " (values are float64); quote it in values.yaml"
                )
            return str(int(value))
        return repr(float(value))
    raise TemplateError(f"cannot print {type(value).__name__} {value!r}; use toYaml")


def to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=10_000)
    text = text.removesuffix("\n")
    return text.removesuffix("\n...")


def _indent(width: int, text: str) -> str:
    pad = " " * int(width)
    return pad + text.replace("\n", "\n" + pad)


def _printf(fmt: str, *args: Any) -> str:
    values = list(args)

    def substitute(match: re.Match[str]) -> str:
        verb = match.group(1)
        if verb == "%":
            return "%"
        if not values:
            raise TemplateError(f"printf {fmt!r}: too few arguments")
        value = values.pop(0)
        if verb == "s" and not isinstance(value, str):
            raise TemplateError(f"printf %s of {value!r} (Helm would print %!s(...)); use %v")
        return go_string(value)

    result = re.sub(r"%([sv%])", substitute, fmt)
    if re.search(r"%[^sv%]", fmt):
        raise TemplateError(f"printf {fmt!r}: only %s and %v are supported")
    if values:
        raise TemplateError(f"printf {fmt!r}: too many arguments")
    return result


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(f"required: {message}")
    return value


def _fail(message: str) -> str:
    raise TemplateError(f"fail: {message}")


def _trunc(length: int, text: str) -> str:
    if length < 0:
        return text[length:] if len(text) + length > 0 else text
    return text[:length]


@dataclass
class Chart:
    """A chart directory: its Chart.yaml, values.yaml and templates, parsed once."""

    path: Path
    metadata: dict[str, Any] = field(init=False)
    values: dict[str, Any] = field(init=False)
    files: dict[str, list[Any]] = field(init=False)
    defines: dict[str, list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = yaml.safe_load((self.path / "Chart.yaml").read_text())
        self.values = yaml.safe_load((self.path / "values.yaml").read_text()) or {}
        self.defines = {}
        self.files = {}
        templates = self.path / "templates"
        for file in sorted(templates.iterdir()):
            if file.suffix not in (".yaml", ".yml", ".tpl") or file.name == "NOTES.txt":
                continue
            relative = f"templates/{file.name}"
            nodes = _parse(_lex(file.read_text(), relative), self.defines)
            if not file.name.startswith("_"):
                self.files[relative] = nodes

    def render(
        self,
        overrides: Mapping[str, Any] | None = None,
        release: str = "tempering",
        namespace: str = "default",
    ) -> dict[str, str]:
        """Each template file's output, as ``helm template`` would print it."""
        values = merge(copy.deepcopy(self.values), overrides or {})
        root = {
            "Values": values,
            "Release": {
                "Name": release,
                "Namespace": namespace,
                "Service": "Helm",
                "IsInstall": True,
                "IsUpgrade": False,
            },
            "Chart": {
                "Name": self.metadata["name"],
                "Version": str(self.metadata["version"]),
                "AppVersion": str(self.metadata.get("appVersion", "")),
            },
        }
        return {
            name: _Renderer(self.defines, root).run(nodes) for name, nodes in self.files.items()
        }

    def manifests(self, overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every Kubernetes object the chart renders to, parsed."""
        documents = []
        for name, text in self.render(overrides).items():
            try:
                loaded = list(yaml.safe_load_all(text))
            except yaml.YAMLError as error:
                raise TemplateError(f"{name} renders to invalid YAML: {error}\n{text}") from error
            for document in loaded:
                if document is None:
                    continue
                if not isinstance(document, dict):
                    raise TemplateError(f"{name}: a document is not a mapping: {document!r}")
                documents.append(document)
        return documents


def merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, anything else replaces."""
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class _Renderer:
    def __init__(self, defines: dict[str, list[Any]], root: dict[str, Any]) -> None:
        self._defines = defines
        self._root = root
        self._functions: dict[str, Callable[..., Any]] = {
            "include": self._include,
            "quote": lambda *v: " ".join(json.dumps(go_string(x)) for x in v),
            "default": lambda fallback, value=None: value if truthy(value) else fallback,
            "required": _required,
            "fail": _fail,
            "toYaml": to_yaml,
            "indent": lambda width, text: _indent(width, text),
            "nindent": lambda width, text: "\n" + _indent(width, text),
            "printf": _printf,
            "trunc": _trunc,
            "trimSuffix": lambda suffix, text: text.removesuffix(suffix),
            "contains": lambda part, text: part in text,
            "sha256sum": lambda text: hashlib.sha256(text.encode()).hexdigest(),
            "not": lambda value: not truthy(value),
            "eq": lambda first, *others: any(first == other for other in others),
            "ne": lambda first, second: first != second,
        }

    def run(self, nodes: list[Any], dot: Any = None) -> str:
        dot = self._root if dot is None else dot
        out: list[str] = []
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Output):
                value = self._pipeline(node.pipeline, dot, node.where)
                out.append(go_string(value) if value is not None else _nil(node.where))
            elif isinstance(node, _If):
                for pipeline, body in node.branches:
                    if truthy(self._pipeline(pipeline, dot, "if")):
                        out.append(self.run(body, dot))
                        break
                else:
                    out.append(self.run(node.otherwise, dot))
            elif isinstance(node, _With):
                value = self._pipeline(node.pipeline, dot, "with")
                if truthy(value):
                    out.append(self.run(node.body, value))
                else:
                    out.append(self.run(node.otherwise, dot))
        return "".join(out)

    def _include(self, name: str, dot: Any) -> str:
        if name not in self._defines:
            raise TemplateError(f"include of undefined template {name!r}")
        return self.run(self._defines[name], dot)

    def _pipeline(self, pipeline: _Pipeline, dot: Any, where: str) -> Any:
        result: Any = _NOTHING
        for command in pipeline.commands:
            result = self._command(command, dot, where, result)
        return result

    def _command(self, command: list[Any], dot: Any, where: str, piped: Any) -> Any:
        head, *args = command
        if isinstance(head, _Ident):
            name = head.name
            if name in ("and", "or"):
                operands = [*args, _Literal(piped)] if piped is not _NOTHING else args
                value: Any = None
                for operand in operands:
                    value = self._operand(operand, dot, where)
                    if truthy(value) != (name == "and"):
                        return value
                return value
            if name not in self._functions:
                raise TemplateError(f"{where}: function {name!r} is not supported")
            values = [self._operand(arg, dot, where) for arg in args]
            if piped is not _NOTHING:
                values.append(piped)
            try:
                return self._functions[name](*values)
            except TypeError as error:
                raise TemplateError(f"{where}: {name}: {error}") from error
        if args or piped is not _NOTHING:
            raise TemplateError(f"{where}: {head!r} is not a function")
        return self._operand(head, dot, where)

    def _operand(self, operand: Any, dot: Any, where: str) -> Any:
        if isinstance(operand, _Literal):
            return operand.value
        if isinstance(operand, _Pipeline):
            return self._pipeline(operand, dot, where)
        if isinstance(operand, _Field):
            value = dot if operand.root == "." else self._root
            walked = operand.root
            for key in operand.path:
                if not isinstance(value, Mapping) or key not in value:
                    raise TemplateError(
                        f"{where}: {walked}.{key} does not exist (declare it in values.yaml)"
                    )
                value = value[key]
                walked = f"{walked.rstrip('.')}.{key}"
            return value
        if isinstance(operand, _Ident):
            raise TemplateError(f"{where}: function {operand.name!r} used as a value")
        raise TemplateError(f"{where}: cannot evaluate {operand!r}")


class _Nothing:
    pass


_NOTHING = _Nothing()


def _nil(where: str) -> str:
    raise TemplateError(f"{where}: prints a null value (Helm would print nothing)")
