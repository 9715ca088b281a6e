"""Schema export and import."""
