"""The robustness report as one self-contained HTML page: the model card's content, the plot
embedded as a data URI, inline CSS, no scripts and no links out, so the file can be mailed,
attached to a CI run or opened offline.

Every string from the report is escaped: model notes, attack names and input details can carry
text a user chose. A Content-Security-Policy that allows no scripts backs the escaping up.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body { font-family: system-ui, sans-serif; color: #1a1a1a; margin: 0; background: #fafafa; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 2rem 3rem; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: 0.3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.8rem 0; }
th, td { padding: 0.3rem 0.8rem; border-bottom: 1px solid #e5e5e5; text-align: left; }
th { background: #f2f2f2; font-weight: 600; }
.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: #666; font-size: 0.85em; margin-left: 0.3em; }
.muted { color: #666; font-size: 0.9em; }
.flag { color: #a40000; font-weight: 600; }
.ok { color: #2a6a2a; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { font-size: 0.85em; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; }
"""


def render(
    report: Mapping[str, Any], plot_png: bytes | None = None, job_id: str | None = None
) -> str:
    """The page for ``report`` (a parsed ``report.json``), with ``plot_png`` embedded when
    given. Raises KeyError or TypeError when ``report`` is not a robustness report."""
    original, hardened = report["original"], report["hardened"]
    title = "Robustness report" + (f": job {job_id}" if job_id else "")
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{_summary(report)}</p>",
        _headline_table(original, hardened),
        '<p class="muted">Intervals are 95% Wilson intervals. A sample counts as robust only if'
        " no attack in the suite changed its prediction.</p>",
    ]
    if report.get("verdict"):
        body.append(_verdict_block(report["verdict"]))
    if plot_png is not None:
        body.append(_figure(plot_png))
    body += [
        "<h2>Per attack (robust accuracy)</h2>",
        _attack_table(original["attacks"], hardened["attacks"]),
        "<h2>Gradient masking</h2>",
        _masking_list(original, hardened),
    ]
    if report.get("tabular"):
        body += _tabular(report["tabular"])
    notes = [*report.get("model_notes", []), *report.get("training", {}).get("notes", [])]
    if notes:
        body += ["<h2>Notes</h2>", _list(_e(note) for note in notes)]
    body += [
        "<h2>Robustness versus epsilon</h2>",
        _curve_table(original["curve"], hardened["curve"]),
        "<h2>Export check</h2>",
        f"<p>{_export(report['export'])}</p>",
        "<h2>Provenance</h2>",
        _provenance(report, job_id),
    ]
    return _page(title, "\n".join(body))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _summary(report: Mapping[str, Any]) -> str:
    threat, evaluation = report["threat_model"], report["evaluation"]
    total = report["original"]["clean_accuracy"]["total"]
    eps = f"{threat['eps']:g}"
    return (
        f"Method: <strong>{_e(report['training']['method'])}</strong>, threat model:"
        f" {_e(threat['norm'])} ball of radius {_e(eps)}, evaluation suite:"
        f" {_e(evaluation['suite'])} on {_e(total)} held-out samples"
        f" (seed {_e(evaluation.get('seed', '?'))})."
    )


def _headline_table(original: Mapping[str, Any], hardened: Mapping[str, Any]) -> str:
    rows = [
        ["clean accuracy", _cell(original["clean_accuracy"]), _cell(hardened["clean_accuracy"])],
        [
            "robust accuracy (per-sample worst case over the cascade)",
            _cell(original["robust_accuracy"]),
            _cell(hardened["robust_accuracy"]),
        ],
        ["gradient masking", _verdict(original), _verdict(hardened)],
    ]
    return _table(["", "original", "hardened"], rows)


def _verdict_block(verdict: Mapping[str, Any]) -> str:
    """The engine's verdict: its summary, flagged unless hardening improved robustness without a
    clean drop, and the sentences with the numbers."""
    good = verdict.get("improved") and verdict.get("clean") == "kept"
    summary = f'<p class="{"ok" if good else "flag"}"><strong>{_e(verdict["summary"])}</strong></p>'
    details = _list(_e(detail) for detail in verdict.get("details", []))
    return f"<h2>Verdict</h2>\n{summary}\n{details}"


def _attack_table(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> str:
    hardened = {a["name"]: a for a in after}
    rows = []
    for attack in before:
        other = hardened.get(attack["name"])
        rows.append(
            [
                f"<strong>{_e(attack['name'])}</strong>",
                "white-box" if attack.get("white_box", True) else "black-box",
                _e(attack.get("description", "")),
                _cell(attack["robust_accuracy"]),
                _cell(other["robust_accuracy"]) if other else "-",
            ]
        )
    return _table(["attack", "access", "what it does", "original", "hardened"], rows)


def _masking_list(original: Mapping[str, Any], hardened: Mapping[str, Any]) -> str:
    items = []
    for label, scores in (("original", original), ("hardened", hardened)):
        fired = [check for check in scores["masking"] if check["fired"]]
        if not fired:
            items.append(
                f'{label}: <span class="ok">no sign of gradient masking</span> in the checks we'
                " run."
            )
        for check in fired:
            items.append(
                f'<span class="flag">{label}: {_e(check["check"])}</span>'
                f" ({_e(check['detail'])}). {_e(check['explanation'])}"
            )
    return _list(items)


def _tabular(section: Mapping[str, Any]) -> list[str]:
    """A model scored under a feature schema: the schema, what each constrained attack's
    candidates respected and how many repair dropped, and the unconstrained sanity line."""
    features = [
        [
            f"<strong>{_e(f['name'])}</strong>",
            _e(f["kind"]),
            "yes" if f["mutable"] else "no",
            _e(f"[{_plain(f['lower'])}, {_plain(f['upper'])}]"),
            _e(f["budget"]),
        ]
        for f in section["schema"]["features"]
    ]
    audits = [
        [
            _e(label),
            f"<strong>{_e(a['name'])}</strong>",
            *(
                _e(a[key])
                for key in (
                    "candidates",
                    "invalid_before_repair",
                    "dropped_after_repair",
                    "counted",
                )
            ),
            _e(", ".join(a["respected"]) or "none"),
        ]
        for label in ("original", "hardened")
        for a in section[label]["attacks"]
    ]
    sanity = [
        f"{label}: {_cell(section[label]['unconstrained']['robust_accuracy'])}"
        for label in ("original", "hardened")
    ]
    linear = [
        [
            _e(c["name"]),
            f"<code>{_e(c['formula'])}</code>",
            _e(c.get("dependent") or ""),
        ]
        for c in section["schema"].get("constraints") or []
    ]
    return [
        "<h2>Feature schema</h2>",
        _table(["feature", "kind", "mutable", "range", "budget"], features),
        *(
            [
                '<p class="muted">Linear constraints between features (<code>linear</code>'
                " below).</p>",
                _table(["constraint", "formula", "recomputed"], linear),
            ]
            if linear
            else []
        ),
        "<h2>Constrained attacks</h2>",
        '<p class="muted">A candidate counts only if its repair onto the schema is'
        " misclassified and passes an independent check of every constraint.</p>",
        _table(
            [
                "model",
                "attack",
                "candidates",
                "invalid before repair",
                "dropped after repair",
                "counted",
                "respected as returned",
            ],
            audits,
        ),
        *_exhaustive(section),
        f"<p><strong>{_e(section['original']['unconstrained']['label'])}</strong></p>",
        _list(sanity),
    ]


def _exhaustive(section: Mapping[str, Any]) -> list[str]:
    """Per model, one line on the enumeration of every valid point (reports from 1.3 on)."""
    if "exhaustive" not in section["original"]:
        return []
    items = []
    for label in ("original", "hardened"):
        block = section[label]["exhaustive"]
        missed = block["missed_by_attacks"]
        items.append(
            f"{_e(label)}: {_e(block['summary'])}; missed by the attacks: "
            + (_flag(f"{_e(missed)} (the attacks alone overstated robustness)") if missed else "0")
            + ("; the headline is exact" if block["headline_exact"] else "")
        )
    return [
        "<p><strong>Exhaustive enumeration</strong> of every valid point, where the attacker's"
        " set is finite, on the samples the attacks left robust:</p>",
        _list(items),
    ]


def _curve_table(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [_e(f"{b['eps']:.4g}"), _cell(b["robust_accuracy"]), _cell(a["robust_accuracy"])]
        for b, a in zip(before, after, strict=True)
    ]
    return _table(["eps", "original", "hardened"], rows)


def _export(export: Mapping[str, Any]) -> str:
    verdict = '<span class="ok">passed</span>' if export["passed"] else _flag("failed")
    measured = f"{export['max_abs_diff']:.2e}"
    allowed = f"{export['allowed_diff']:.2g}: {export['tolerance']:g}"
    return (
        f"ONNX (opset {_e(export.get('opset', '?'))}) {verdict}: onnxruntime matches PyTorch"
        f" within {_e(measured)} on {_e(export.get('samples', '?'))} samples (allowed"
        f" {_e(allowed)}, relative to the largest output where that exceeds 1)."
    )


def _provenance(report: Mapping[str, Any], job_id: str | None) -> str:
    entries = [("job id", job_id)] if job_id else [("job id", "none (a local run)")]
    entries += [(key, value) for key, value in sorted(report.get("inputs", {}).items())]
    entries += [(key, value) for key, value in sorted(report.get("environment", {}).items())]
    items = [
        f"<dt>{_e(key.replace('_', ' '))}</dt><dd><code>{_e(_plain(value))}</code></dd>"
        for key, value in entries
    ]
    return "<dl>\n" + "\n".join(items) + "\n</dl>"


def _figure(png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="Robust accuracy against epsilon,'
        " and per attack at the threat model's epsilon, original against hardened\">"
        '<figcaption class="muted">Left: robust accuracy against epsilon with 95% bands (the'
        " dotted line is the threat model's epsilon). Right: robust accuracy per attack at that"
        " epsilon, the worst case hatched, with 95% intervals.</figcaption></figure>"
    )


def _cell(accuracy: Mapping[str, Any]) -> str:
    value = f"{float(accuracy['value']):.1%}"
    interval = f"[{float(accuracy['low']) * 100:.1f}, {float(accuracy['high']) * 100:.1f}]"
    return f'<span class="num">{value}<span class="ci">{interval}</span></span>'


def _verdict(scores: Mapping[str, Any]) -> str:
    if scores.get("gradient_masking_suspected"):
        return _flag("SUSPECTED")
    return '<span class="ok">no sign</span>'


def _flag(text: str) -> str:
    return f'<span class="flag">{text}</span>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` hold HTML, escaped already."""
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "\n".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _list(items: Any) -> str:
    return "<ul>\n" + "\n".join(f"<li>{item}</li>" for item in items) + "\n</ul>"


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return " x ".join(str(v) for v in value)
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
