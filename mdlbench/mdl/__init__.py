"""Two-part and prequential description lengths: what a model costs, and what it saves."""
