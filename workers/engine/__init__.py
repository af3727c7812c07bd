"""The hardening engine: load a classifier, harden it, score it honestly, export ONNX.

This package imports neither grpc nor celery. The service and the worker tasks are thin shells
around :func:`workers.engine.pipeline.harden`.
"""
