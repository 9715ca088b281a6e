"""The kernel's route families."""
