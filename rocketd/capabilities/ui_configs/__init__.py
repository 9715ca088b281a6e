"""UI configs: per-entity client configuration."""
