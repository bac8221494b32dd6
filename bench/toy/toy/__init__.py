"""The benchmark's toy project: one module, a unit test, an integration test."""
