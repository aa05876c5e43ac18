"""Prequential MDL: the code length of a corpus under a model that learns as it reads (METHODS §3).

Modules: ``schedule`` (PURE block boundaries and accounting), ``estimators`` (blockwise and online estimators over a
``TokenStream``), ``vocab`` (the alphabet, fixed in advance), ``results`` (rows, run id, program cost, seed
aggregates) and ``driver`` (``run_prequential_for_corpus``: a corpus from ``open_corpus`` end to end).
Import the modules themselves; this package imports nothing, so the pure schedule loads without torch.
"""
