"""Validation rules (field, expression, computed)."""
