"""Infrastructure tests: synthesized templates, config, cfn-lint, replication in moto."""
