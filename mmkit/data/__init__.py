"""Dataset sources, the prepared store and splits."""
