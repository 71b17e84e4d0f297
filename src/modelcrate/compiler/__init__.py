"""Compiling models into faster predictors (control plane: the converters never go into images)."""
