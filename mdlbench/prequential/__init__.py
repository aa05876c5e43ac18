"""Prequential MDL: the code length of a corpus under a model that learns as it reads (METHODS §3).

Importing this package registers the ``prequential_blocks`` and ``prequential`` tables. Entry points:
``run_prequential_for_corpus`` (a corpus from ``open_corpus``), ``estimate`` / ``run_blockwise`` / ``run_online``
(a ``TokenStream`` of ids), and the pure accounting in ``schedule``.
"""

from mdlbench.prequential.cli import PrequentialRun, run_prequential_for_corpus, tokenize_corpus
from mdlbench.prequential.estimators import (
    DEFAULT_ARCH,
    ESTIMATORS,
    BlockCode,
    PrequentialConfig,
    PrequentialEstimate,
    TokenStream,
    code_tokens_bits,
    estimate,
    model_factory,
    resolve_arch,
    run_blockwise,
    run_online,
    stream_from_documents,
)
from mdlbench.prequential.results import aggregate_seeds, prequential_run_id, program_bits
from mdlbench.prequential.schedule import (
    DEFAULT_BLOCK_FRACTIONS,
    block_boundaries,
    prequential_code_length_bits,
    uniform_code_length_bits,
)

__all__ = [
    "DEFAULT_ARCH", "DEFAULT_BLOCK_FRACTIONS", "ESTIMATORS", "BlockCode", "PrequentialConfig", "PrequentialEstimate",
    "PrequentialRun", "TokenStream", "aggregate_seeds", "block_boundaries", "code_tokens_bits", "estimate",
    "model_factory", "prequential_code_length_bits", "prequential_run_id", "program_bits", "resolve_arch",
    "run_blockwise", "run_online", "run_prequential_for_corpus", "stream_from_documents", "tokenize_corpus",
    "uniform_code_length_bits",
]
