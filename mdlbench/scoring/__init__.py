"""Scorers turn documents into code lengths. Torch is imported only by the HF backend."""
