"""Classical compressor baselines on exactly the bytes the models scored.

``compressors`` holds the registry (``COMPRESSORS``: name -> pinned setting, encoder and streaming decoder);
``run`` measures a corpus in every mode and keeps the ``baselines`` table.
"""
