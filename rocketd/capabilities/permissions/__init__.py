"""Row-level permissions: policies, the access policy, its stages."""
