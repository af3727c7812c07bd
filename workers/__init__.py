"""Celery worker application and the hardening engine it runs.

Importing this package is cheap: neither torch nor celery is imported until a submodule asks.
"""
