"""Reports straight from the Parquet results: a Markdown file with PNG figures, optionally one HTML file.

``write_report(results_dir, out)`` reads only the tables (``data``), draws the figures (``figures``), lays out
the content (``markdown``) and renders it (``document``). Nothing here imports torch.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from mdlbench.report.data import Results, load_results
from mdlbench.report.document import to_html, to_markdown
from mdlbench.report.markdown import build_report

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"


def write_report(results_dir: Path, out: Path, *, run_ids: Sequence[str] | None = None, corpus: str | None = None,
                 html: bool = False, command: str = "", context_domains: bool = False) -> list[Path]:
    """Write ``out/report.md`` and ``out/figures/*.png`` (and ``out/report.html``); returns the report file(s).

    Raises InputError when the folder holds no runs or the selection matches none. Figures left over from an
    earlier report in ``out`` are removed, so the folder holds exactly what the report links to.
    """
    res = load_results(Path(results_dir), run_ids=run_ids, corpus=corpus)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / FIGURES).is_dir():
        shutil.rmtree(out / FIGURES)
    blocks = build_report(res, out, command=command or f"mdlbench report {results_dir} --out {out}",
                          fig_subdir=FIGURES, attribution=html, context_domains=context_domains)
    written = [out / REPORT_MD]
    (out / REPORT_MD).write_text(to_markdown(blocks), encoding="utf-8")
    if html:
        (out / REPORT_HTML).write_text(to_html(blocks, out, title="mdlbench report"), encoding="utf-8")
        written.append(out / REPORT_HTML)
    elif (out / REPORT_HTML).exists():
        (out / REPORT_HTML).unlink()  # a stale HTML would disagree with the new report.md
    return written


__all__ = ["FIGURES", "REPORT_HTML", "REPORT_MD", "Results", "load_results", "write_report"]
