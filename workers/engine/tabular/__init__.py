"""Tabular data with a feature schema: constrained threat models for fraud and other tables."""
