"""The ``workers`` fixture (real ``rxroute worker`` processes) for this folder's tests."""

from tests.processes import workers  # noqa: F401
