"""Hypothesis settings for the fuzz property tests: quick in the normal suite, long under
``tox -e fuzz`` (``HYPOTHESIS_PROFILE=fuzz``)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_RELAXED = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
            HealthCheck.large_base_example]
settings.register_profile("fuzz-quick", max_examples=40, deadline=None,
                          suppress_health_check=_RELAXED)
settings.register_profile("fuzz", max_examples=4000, deadline=None,
                          suppress_health_check=_RELAXED)

PROFILE = settings.get_profile(
    "fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "fuzz-quick")
"""Decorate each property test with ``@PROFILE``."""
