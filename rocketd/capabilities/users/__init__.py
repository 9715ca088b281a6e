"""App users and invites."""
