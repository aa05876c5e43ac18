"""Real compression: ``mdlbench compress`` / ``decompress`` turn code lengths into an actual bitstream.

``coder`` codes documents with a model's probabilities (what is coded, and the determinism conditions);
``container`` is the ``.mdlz`` file format.
"""
