"""Self-contained HTML reports: plots and thumbnails embedded as data URIs, so one file opens anywhere.

Every page carries a tiny script that counts images that failed to load and shows a banner if any
did; the demo's browser test reads the same counts (`data-images-total`, `data-images-broken`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canvas.core.atomic import write_text_atomic

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.4}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f4f4f4} figure{display:inline-block;margin:.4rem;vertical-align:top;text-align:center}
figcaption{font-size:.8rem;color:#555;max-width:260px} .note{color:#555;font-size:.9rem}
.broken{background:#c00;color:#fff;padding:.5rem}
img.pix{image-rendering:pixelated}
"""
_CHECK_SCRIPT = """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0));
  document.body.dataset.imagesTotal = imgs.length;
  document.body.dataset.imagesBroken = bad.length;
  if (bad.length) {
    const p = document.createElement('p'); p.className = 'broken';
    p.textContent = bad.length + ' of ' + imgs.length + ' images failed to load';
    document.body.prepend(p);
  }
});
</script>
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_data_uri(fig: Any) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return png_data_uri(buf.getvalue())


def thumbnail_data_uri(image_bytes: bytes, size: int = 160, fmt: str = "PNG") -> str:
    """Any encoded image -> an RGB thumbnail data URI (longest side `size`), PNG or JPEG (smaller pages)."""
    from PIL import Image

    img = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    mime = "jpeg" if fmt == "JPEG" else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def table_html(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p class='note'>(none)</p>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_html(uri: str, caption: str = "", width: int | None = None, pixelated: bool = False) -> str:
    style = f" width='{width}'" if width else ""
    cls = " class='pix'" if pixelated else ""
    return f"<figure><img src='{uri}'{style}{cls} alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}</figcaption></figure>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class HtmlReport:
    """Sections of trusted HTML fragments (build them with the helpers above) rendered to one page."""

    title: str
    subtitle: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, heading: str, body_html: str) -> None:
        self.sections.append((heading, body_html))

    def render(self) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"]
        parts.append(f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>")
        if self.subtitle:
            parts.append(f"<p class='note'>{html.escape(self.subtitle)}</p>")
        for heading, body in self.sections:
            parts.append(f"<h2>{html.escape(heading)}</h2>{body}")
        parts.append(_CHECK_SCRIPT + "</body></html>")
        return "".join(parts)

    def write(self, path: str | Path) -> Path:
        return write_text_atomic(path, self.render())
