"""The team's own client code (a package named like the project's subpackage, on purpose)."""
