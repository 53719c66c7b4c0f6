"""HTML reports render in real headless Chromium; broken images are counted, not hidden."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from canvas.core.browser import image_load_counts  # noqa: E402
from canvas.core.html_report import HtmlReport, figure_data_uri, figure_html, table_html, thumbnail_data_uri  # noqa: E402
from canvas.core.sample_data import build_sample  # noqa: E402


def test_report_images_load_in_chromium_and_broken_ones_are_counted(tmp_path: Path) -> None:
    rows, _ = build_sample()
    fig, ax = plt.subplots()
    ax.hist([1, 2, 2, 3, 3, 3])
    report = HtmlReport("test report", "subtitle")
    report.add("plot", figure_html(figure_data_uri(fig), "histogram"))
    report.add("thumbs", figure_html(thumbnail_data_uri(rows[0]["image"]), rows[0]["key"]))
    report.add("table", table_html([{"stage": "decode", "rejected": 5, "ratio": 0.123456}]))
    good = report.write(tmp_path / "good.html")
    assert image_load_counts(good) == (2, 0)
    assert "0.1235" in good.read_text()

    report.add("missing", figure_html("does-not-exist.png", "missing"))
    assert image_load_counts(report.write(tmp_path / "bad.html")) == (3, 1)
