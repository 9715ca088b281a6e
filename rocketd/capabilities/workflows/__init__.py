"""Durable workflows: definitions, instances, the runner, approvals."""
