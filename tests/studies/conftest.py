"""Fixtures of the study tests: one thread and quiet warnings, the engine tests' own fixture (the
study tests share two cores with the rest of the suite)."""

from tests.engine.conftest import _one_thread_quiet  # noqa: F401  (autouse fixture)
