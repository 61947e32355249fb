"""Backends: the runtimes that execute models (see `workbench.backends.base`)."""
