"""The hypothesis settings shared by the property tests (test_properties.py and
test_properties_trees.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# (derandomized with no example database, as every test here: tests/conftest.py)
SMALL = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
