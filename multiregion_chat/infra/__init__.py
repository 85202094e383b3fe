"""Infrastructure of the multi-region chat: config, constructs and the regional stack."""
