from tests.integration.harness import sims  # noqa: F401 - the fixture, shared by every integration test
