"""Capabilities: one package each; `INSTALLED` lists them."""
