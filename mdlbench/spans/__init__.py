"""Where the bits go between two runs: byte spans both tokenizations agree on (refine), the span_diff table and
its aggregates (diff), the texts the runs scored (texts), and one self-contained HTML page (page, `mdlbench view`).
Nothing here imports torch."""
