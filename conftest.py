"""Test-wide setup that has to happen before any test module imports torch."""

import workers  # noqa: F401  (sets the OpenMP wait policy; see workers/__init__.py)
