"""Test-support code shared by the test suites (stub servers, helpers)."""
