"""The small Go-template renderer behind the chart tests renders as Helm does, and refuses
what it does not know rather than guessing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_render import Chart, TemplateError, go_string


def render(tmp_path: Path, template: str, values: dict[str, Any], helpers: str = "") -> str:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text("name: demo\nversion: 1.2.3\nappVersion: '4.5'\n")
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    (chart / "templates" / "_helpers.tpl").write_text(helpers)
    (chart / "templates" / "t.yaml").write_text(template)
    return Chart(chart).render()["templates/t.yaml"]


def test_trim_markers_follow_text_template(tmp_path: Path) -> None:
    template = "a:\n  {{- if .Values.on }}\n  b: 1\n  {{- end }}\nc: {{ .Values.n -}} \n !"
    assert render(tmp_path, template, {"on": True, "n": 2}) == "a:\n  b: 1\nc: 2!"
    assert render(tmp_path, template, {"on": False, "n": 2}) == "a:\nc: 2!"


def test_include_nindent_toyaml_quote_default(tmp_path: Path) -> None:
    helpers = (
        '{{- define "x.labels" -}}\n'
        "app: {{ .Chart.Name }}\nv: {{ .Chart.AppVersion | quote }}\n{{- end -}}"
    )
    template = (
        'labels:\n  {{- include "x.labels" . | nindent 2 }}\n'
        "res:\n  {{- toYaml .Values.res | nindent 2 }}\n"
        "tag: {{ .Values.tag | default .Chart.AppVersion }}\n"
        "port: {{ .Values.port }}\n"
    )
    out = render(
        tmp_path, template, {"res": {"b": [1, 2], "a": "x"}, "tag": "", "port": 50051}, helpers
    )
    assert yaml.safe_load(out) == {
        "labels": {"app": "demo", "v": "4.5"},
        "res": {"a": "x", "b": [1, 2]},
        "tag": 4.5,
        "port": 50051,
    }


def test_with_else_and_else_if(tmp_path: Path) -> None:
    template = (
        "{{- with .Values.m }}k: {{ .a }}{{ else }}none{{ end }}|"
        '{{- if eq .Values.x "a" }}A{{ else if .Values.y }}Y{{ else }}Z{{ end }}'
    )
    assert render(tmp_path, template, {"m": {"a": 1}, "x": "b", "y": True}) == "k: 1|Y"
    assert render(tmp_path, template, {"m": {}, "x": "a", "y": False}) == "none|A"


def test_printf_and_parenthesised_pipelines(tmp_path: Path) -> None:
    template = '{{ printf "%s-%v" .Release.Name (.Values.n | default 7) | quote }}'
    assert render(tmp_path, template, {"n": 0}) == '"tempering-7"'


@pytest.mark.parametrize(
    ("template", "values", "message"),
    [
        ("{{ .Values.missing }}", {}, "does not exist"),
        ("{{ range .Values.l }}x{{ end }}", {"l": [1]}, "not supported"),
        ("{{ $x := 1 }}", {}, "not supported"),
        ("{{ .Values.l | upper }}", {"l": "a"}, "'upper' is not supported"),
        ("{{ .Values.m }}", {"m": {"a": 1}}, "toYaml"),
        ("{{ .Values.big }}", {"big": 1000000}, "scientific"),
        ('{{ printf "%s" .Values.n }}', {"n": 1}, "%v"),
        ('{{ required "give x" .Values.x }}', {"x": ""}, "give x"),
        ('{{ fail "no" }}', {}, "fail: no"),
        ("{{ if .Values.x }}", {"x": 1}, "without end"),
    ],
)
def test_refuses_what_it_cannot_render_like_helm(
    tmp_path: Path, template: str, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        render(tmp_path, template, values)


def test_numbers_print_as_helm_prints_them() -> None:
    assert go_string(18300) == "18300"
    assert go_string(0.5) == "0.5"
    assert go_string(True) == "true"
