"""The report's building blocks: ``Section``, its plots, and the HTML/Markdown writers of one self-contained page.

Everything shown comes from the run directory: manifests (rows, metrics, curves, times) and the
stages' Parquet outputs (scores, kept/rejected examples). A section whose stage has not run says so
instead of disappearing, so a half-finished run still gets a truthful report.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

from phiray.formatting import format_value as fmt
from phiray.rundir import Manifest, RunDir


@dataclass
class Section:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # (kind, payload): p | table | png | code | links

    def p(self, text: str) -> "Section":
        self.blocks.append(("p", text))
        return self

    def table(self, header: list[str], rows: list[list[Any]]) -> "Section":
        self.blocks.append(("table", (header, rows)))
        return self

    def png(self, name: str, data: bytes, alt: str) -> "Section":
        self.blocks.append(("png", (name, data, alt)))
        return self

    def code(self, caption: str, text: str) -> "Section":
        self.blocks.append(("code", (caption, text)))
        return self

    def links(self, items: list[tuple[str, str]]) -> "Section":
        """A list of (label, href) links; hrefs relative to the report directory."""
        self.blocks.append(("links", items))
        return self


# ----------------------------------------------------------------------------- plotting


def _figure_png(draw) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    try:
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def histogram_png(kept: list[float], rejected: list[float], threshold: float | None) -> bytes:
    def draw(ax):
        bins = [i / 40 for i in range(41)]
        ax.hist([rejected, kept], bins=bins, stacked=True, label=["rejected", "kept"], color=["#c44", "#4a4"])
        if threshold is not None:
            ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3g}")
        ax.set_xlabel("quality score (forest probability of 'educational')")
        ax.set_ylabel("documents")
        ax.legend()

    return _figure_png(draw)


def curves_png(series: dict[str, list[tuple[float, float]]], ylabel: str, title: str) -> bytes:
    def draw(ax):
        for label, points in series.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)

    return _figure_png(draw)


def bars_png(labels: list[str], values: list[float], ylabel: str, title: str) -> bytes:
    def draw(ax):
        ax.bar(labels, values, color="#48c")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)

    return _figure_png(draw)


# ----------------------------------------------------------------------------- rendering

CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #48c}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#eef}pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px;max-height:300px}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}.note{color:#666}
"""


def render_html(title: str, sections: list[Section]) -> str:
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    out.append(
        "<ul>"
        + "".join(f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>" for i, s in enumerate(sections))
        + "</ul>"
    )
    for i, section in enumerate(sections):
        out.append(f"<h2 id='s{i}'>{html.escape(section.title)}</h2>")
        for kind, payload in section.blocks:
            if kind == "p":
                out.append(f"<p>{html.escape(payload)}</p>")
            elif kind == "table":
                header, rows = payload
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                for row in rows:
                    out.append("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>")
                out.append("</table>")
            elif kind == "png":
                name, data, alt = payload
                b64 = base64.b64encode(data).decode()
                out.append(
                    f"<img class='plot' id='{html.escape(name)}' alt='{html.escape(alt)}' "
                    f"src='data:image/png;base64,{b64}'>"
                )
            elif kind == "code":
                caption, text = payload
                out.append(f"<p class='note'>{html.escape(caption)}</p><pre>{html.escape(text)}</pre>")
            elif kind == "links":
                out.append(
                    "<ul>"
                    + "".join(
                        f"<li><a href='{html.escape(href)}'>{html.escape(label)}</a></li>" for label, href in payload
                    )
                    + "</ul>"
                )
    out.append("</body></html>")
    return "\n".join(out)


def render_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for kind, payload in section.blocks:
            if kind == "p":
                out += [payload, ""]
            elif kind == "table":
                header, rows = payload
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
                out.append("")
            elif kind == "png":
                name, _, alt = payload
                out += [f"![{alt}]({name}.png)", ""]
            elif kind == "code":
                caption, text = payload
                out += [f"*{caption}*", "", "```python", text, "```", ""]
            elif kind == "links":
                out += [f"- [{label}]({href})" for label, href in payload] + [""]
    return "\n".join(out)


def write_report(rd: RunDir, sections: list[Section], title: str) -> dict[str, str]:
    rd.makedirs("report")
    for section in sections:
        for kind, payload in section.blocks:
            if kind == "png":
                rd.write_bytes(f"report/{payload[0]}.png", payload[1])
    rd.write_text("report/report.html", render_html(title, sections))
    rd.write_text("report/report.md", render_markdown(title, sections))
    return {"html": rd.path("report/report.html"), "markdown": rd.path("report/report.md")}


def manifests(rd: RunDir, names: list[str]) -> dict[str, Manifest]:
    found = {}
    for name in names:
        m = rd.read_manifest(name)
        if m is not None:
            found[name] = m
    return found
