"""Webhooks on a transactional outbox."""
