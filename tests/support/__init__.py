"""Code the tests share: helpers, clients, schemas, receivers, process runners.

Test modules import from here and never from one another (tests/unit/test_tests_layout.py checks
it); fixtures live in the conftest.py of the narrowest folder that uses them.
"""
