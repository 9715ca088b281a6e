"""rocketd: a metadata-driven backend engine (JSON metadata in, a running REST backend out)."""

__version__ = "0.1.0"
