"""The write path: plans, the executor, nested writes, deletes, slugs, transactions."""
