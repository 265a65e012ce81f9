"""Use cases, configuration, the composition root and the CLI."""
