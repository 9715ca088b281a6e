"""Network primitives shared by every capability that connects to a tenant-configured host."""
