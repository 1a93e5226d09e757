"""Placeholder: the learned mixture model lands here."""
