"""Real compression: ``mdlbench compress`` / ``decompress`` turn code lengths into an actual bitstream.

``coder`` codes documents with a model's probabilities (what is coded, and the determinism conditions);
``plan`` and ``lockstep`` are the batched coder, ``archive`` corpus archives (resume, per-document extraction),
``container`` the ``.mdlz`` file format, ``commands`` what the two subcommands do.
"""
