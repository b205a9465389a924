"""The store tests are a package so their conftest is ``stores.conftest``, not a second
top-level ``conftest`` that would shadow tests/conftest.py for the other test modules."""
