"""The read path: list queries, lookups, includes, and the records' wire JSON."""
