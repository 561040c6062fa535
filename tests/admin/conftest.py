"""The admin pages' tests share one admin account and one signed-in client."""

from tests.staff_pages import admin as admin  # a fixture
from tests.staff_pages import as_admin as as_admin  # a fixture
