"""The team's own CDK stacks (a package named like many teams' own, on purpose)."""
