"""Webhooks on a transactional outbox: registrations, outbox rows, outbound HTTP, the dispatcher."""
