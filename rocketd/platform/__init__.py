"""Platform: the lifecycle of apps (create, list, delete, repair) and app names."""
