"""Test suites; `tests.support` holds helpers shared between them."""
