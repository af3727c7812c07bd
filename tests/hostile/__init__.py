"""Hostile-input corpus and the test that walks it (see corpus.py)."""
