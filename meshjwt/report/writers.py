"""Write a ConformanceReport document as YAML and as a self-contained HTML page (atomically)."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from meshjwt.report.model import title as report_title

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#f3f3f3} td.num{text-align:right} code{font-size:.85em;word-break:break-all}
.success,.passed{color:#176f2c;font-weight:bold} .failure,.failed,.error{color:#b00020;font-weight:bold}
.partial,.unsupported{color:#8a6100;font-weight:bold} summary{cursor:pointer;margin:.3em 0}
"""


def _write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def to_yaml(report: Mapping[str, Any]) -> str:
    return yaml.dump(dict(report), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def write_yaml(report: Mapping[str, Any], path: Path) -> Path:
    """Write the report as YAML (UTF-8); return the path."""
    return _write_atomically(path, to_yaml(report))


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _badge(word: str) -> str:
    return f'<span class="{_e(word)}">{_e(word)}</span>'


def _expected(expected: Mapping[str, Any]) -> str:
    parts = [str(expected["status"])]
    if "body" in expected:
        parts.append(f"body = {expected['body']!r}")
    if "bodyContains" in expected:
        parts.append(f"body ∋ {expected['bodyContains']!r}")
    if "bodyNotContains" in expected:
        parts.append(f"body ∌ {expected['bodyNotContains']!r}")
    parts += [f"{k} ∋ {v!r}" for k, v in expected.get("headers", {}).items()]
    text = _e(", ".join(parts))
    return text + (f"<br><small>{_e(expected['reason'])}</small>" if expected.get("reason") else "")


#: an identity field (--report-organization ...) the run was not given
NOT_GIVEN = "<i>not given</i>"


def _banner(report: Mapping[str, Any]) -> str:
    """What kind of evidence this is, first thing on the page: a reference model or a rehearsal is no verdict."""
    if report.get("rehearsal"):
        return f'<p class="banner"><strong>Rehearsal:</strong> {_e(report["rehearsal"]["note"])}</p>'
    if report.get("reference"):
        return f'<p class="banner"><strong>Reference run:</strong> this is {_e(report["reference"]["note"])}.</p>'
    return ""


def _meta(report: Mapping[str, Any]) -> str:
    mesh, impl = report["mesh"], report["implementation"]
    rows = [
        ("Result", _badge(report["result"]) + (" (interrupted)" if report.get("interrupted") else "")),
        ("Date", _e(report["date"])), ("Suite version", _e(report["suiteVersion"])), ("Target", _e(report["target"])),
        ("Mode", _e(report.get("mode", "conformance"))),
        ("Mesh", _e(f"{mesh['flavor']} {mesh['version']}, JWKS fetch mode {mesh['jwksFetchMode']}"
                    + (" (reference model, not a running mesh)" if report.get("mode") == "reference" else ""))),
        *[(f"Mesh {k}", _e(v)) for k, v in mesh.get("details", {}).items()],
        *[(f"Implementation {k}", _e(", ".join(v) if isinstance(v, list) else v) if v else NOT_GIVEN)
          for k, v in impl.items()],
        ("Suite sharpness", _e(f"{report['sharpness']['score']} ({report['sharpness']['meaning']})")
         if report.get("sharpness") else "-"),
        ("Timeouts", _e(", ".join(f"{k}={v:g}" for k, v in report["timeouts"].items()))),
        ("Statistics", _e(", ".join(f"{k} {v}" for k, v in report["statistics"].items()))),
        ("Supported features", _e(", ".join(report["features"]["supported"]) or "-")),
        ("Unsupported features", _e(", ".join(report["features"]["unsupported"]) or "-")),
        *[("<b>VULNERABILITY</b>", _e(f"{v['meshVersion']}: {v['finding']} (case {v['case']})"))
          for v in report.get("vulnerabilities", [])],
        ("How to reproduce", f"<code>{_e(report['howToReproduce'])}</code>"),
    ]  # fmt: skip
    return "<table class=\"meta\">" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _summary(report: Mapping[str, Any]) -> str:
    head = "<tr><th>Claim</th><th>Section</th><th>Cases</th><th>Passed</th><th>Failed</th><th>Unsupported</th>" \
           "<th>Result</th></tr>"  # fmt: skip
    rows = "".join(
        f'<tr><td><a href="#{_e(c["id"])}">{_e(c["id"])}</a></td><td>{_e(c["section"])}</td>'
        f'<td class="num">{len(c["cases"])}</td><td class="num">{c["statistics"]["passed"]}</td>'
        f'<td class="num">{c["statistics"]["failed"]}</td><td class="num">{c["statistics"]["skipped"]}</td>'
        f"<td>{_badge(c['result'])}</td></tr>"
        for c in report["claims"]
    )
    return f'<table class="summary">{head}{rows}</table>'


def _diagnostics(case: Mapping[str, Any]) -> str:
    """A failed case's link to its diagnostics folder (``artifacts/...``, beside the report), if collected."""
    return f'<br><a href="{_e(case["artifacts"])}">diagnostics</a>' if case.get("artifacts") else ""


def _claim(claim: Mapping[str, Any]) -> str:
    head = "<tr><th>Case</th><th>Request</th><th>Expected</th><th>Observed</th><th>Verdict</th><th>Attempts</th></tr>"
    rows = "".join(
        f"<tr><td>{_e(c['name'])}{'<br><small>' + _e(c['description']) + '</small>' if c.get('description') else ''}"
        f"</td><td><code>{_e(c['request'])}</code></td><td>{_expected(c['expected'])}</td>"
        f"<td><code>{_e(c['observed'])}</code>{'<br><small>' + _e(c['detail']) + '</small>' if c.get('detail') else ''}"
        f"</td><td>{_badge(c['verdict'])}"
        f"{_diagnostics(c)}"
        f"</td><td class=\"num\">{c['attempts']}</td></tr>"
        for c in claim["cases"]
    )
    is_open = " open" if claim["result"] == "failure" else ""
    return (
        f'<details id="{_e(claim["id"])}"{is_open}><summary><b>{_e(claim["id"])}</b> — {_e(claim["section"])} '
        f"({_badge(claim['result'])})</summary><p>Features: {_e(', '.join(claim['features']))}; "
        f"source: <code>{_e(claim['source'])}</code></p><table class=\"cases\">{head}{rows}</table></details>"
    )


def _security(section: Mapping[str, Any] | None) -> str:
    """The security qualification section (token attacks, path-normalization probe), if the run had one."""
    if not section:
        return ""
    attacks, probe = section.get("tokenAttacks", {}), section.get("pathNormalizationProbe", {})
    accepted = "".join(f"<li><code>{_e(a['case'])}</code>: {_e(a['token'])} → <code>{_e(a['observed'])}</code></li>"
                       for a in attacks.get("accepted", []))  # fmt: skip
    parts = [
        "<h2>Security qualification</h2>",
        f"<p>Token attacks (<code>{_e(attacks.get('scenario'))}</code>): {_e(attacks.get('cases'))} cases, "
        f"{_e(attacks.get('passed'))} passed, {_e(attacks.get('failed'))} failed, "
        f"{_e(attacks.get('unsupported'))} unsupported.</p>",
        f"<p><b>Attacks accepted:</b></p><ul>{accepted}</ul>" if accepted else "<p>No attack was accepted.</p>",
        f"<p>Path-normalization probe (mesh mode {_e(section.get('mesh', {}).get('pathNormalization'))}): ",
    ]
    if probe.get("unsupported"):
        parts.append(f"{_badge('unsupported')} {_e(probe['unsupported'])}</p>")
    corpus = probe.get("corpus", {})
    parts.append(f"{_e(probe.get('requests'))} requests, {_e(probe.get('bypasses'))} bypasses "
                 f"({_e(probe.get('unexplainedBypasses'))} not explained by their mode), "
                 f"{_e(probe.get('requestsPerSecond'))} requests/s; corpus {_e(corpus.get('total'))} paths "
                 f"({_e(corpus.get('hypothesisMutations'))} hypothesis mutations, seed {_e(corpus.get('seed'))})."
                 "</p>")  # fmt: skip
    facts = "".join(f"<tr><td>{_e(f['fact'])}</td><td>{_e({True: 'yes', False: 'NO', None: '-'}[f['reproduced']])}"
                    "</td></tr>" for f in probe.get("knownFacts", []))  # fmt: skip
    if facts:
        parts.append(f"<table><tr><th>Known fact</th><th>Reproduced</th></tr>{facts}</table>")
    rows = []
    for combo in probe.get("combinations", []):
        where = f"{combo['mode']} {combo['backend']} {combo['policy']}"
        if combo.get("unsupported"):
            rows.append(f"<tr><td>{_e(where)}</td><td colspan=\"3\">{_badge('unsupported')} "
                        f"{_e(combo['unsupported'])}</td></tr>")  # fmt: skip
            continue
        listed = "".join(f"<li><code>{_e(b['request'])}</code> → {_e(b['status'])} (closed by {_e(b['closedBy'])}"
                         f"{'' if b['explainedByMode'] else ', NOT explained by the mode'})</li>"
                         for b in combo.get("bypasses", []))  # fmt: skip
        detail = (f"<details><summary>{len(combo['bypasses'])} bypasses</summary><ul>{listed}</ul></details>"
                  if listed else "0")  # fmt: skip
        note = f"<br><small>{_e(combo['problem'])}</small>" if combo.get("problem") else ""
        rows.append(f"<tr><td>{_e(where)}{note}</td><td class=\"num\">{_e(combo['requests'])}</td>"
                    f"<td>{detail}</td><td class=\"num\">{_e(combo['unexplained'])}</td></tr>")  # fmt: skip
    if rows:
        parts.append("<table><tr><th>Mode backend policy</th><th>Requests</th><th>Bypasses</th>"
                     f"<th>Not explained</th></tr>{''.join(rows)}</table>")  # fmt: skip
    return "".join(parts)


def to_html(report: Mapping[str, Any]) -> str:
    """A single HTML page (inline CSS, no scripts or external resources)."""
    title = f"{report_title(report)} report: {report['target']} — {report['result']}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>{_banner(report)}<h1>{_e(title)}</h1>"
        f"<p><code>{_e(report['apiVersion'])}</code> {_e(report['kind'])}</p>"
        f"{_meta(report)}"
        f"<h2>Claims</h2>{_summary(report)}<h2>Cases</h2>{''.join(_claim(c) for c in report['claims'])}"
        f"{_security(report.get('security'))}</body></html>\n"
    )


def write_html(report: Mapping[str, Any], path: Path) -> Path:
    """Write the report as a self-contained HTML page; return the path."""
    return _write_atomically(path, to_html(report))
