"""SQL composition for entities: identifiers, statements and their caches."""
