"""Tests: unit tests on fakes and integration tests on tiny models with the real engines."""
