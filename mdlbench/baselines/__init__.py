"""Classical compressor baselines on exactly the bytes the models scored.

``compressors`` holds the registry (``COMPRESSORS``); ``run`` measures a corpus and keeps the ``baselines`` table
(importing it registers the table); ``cli`` is ``mdlbench baselines``. The names below load on first use, so that
importing the registry (e.g. the PPMd decoder child process, or ``--list``) does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "COMPRESSORS": "mdlbench.baselines.compressors",
    "CompressorSpec": "mdlbench.baselines.compressors",
    "get_compressor": "mdlbench.baselines.compressors",
    "BaselineRow": "mdlbench.baselines.run",
    "MODES": "mdlbench.baselines.run",
    "SEPARATOR": "mdlbench.baselines.run",
    "bits_per_byte": "mdlbench.baselines.run",
    "ensure_baselines": "mdlbench.baselines.run",
    "header_once_total": "mdlbench.baselines.run",
    "measure_compressor": "mdlbench.baselines.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
