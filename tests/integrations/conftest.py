"""Fixtures of the integration tests: the model tests' one thread and fixed seed."""

from tests.models.conftest import _one_thread_fixed_seed  # noqa: F401  (autouse fixture)
