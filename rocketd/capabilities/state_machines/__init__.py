"""State machines on entity fields."""
