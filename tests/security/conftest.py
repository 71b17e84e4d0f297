"""The transform tests' echo model serves the transform attacks too."""

from tests.transform.conftest import echo_model  # noqa: F401  (a fixture, shared)
