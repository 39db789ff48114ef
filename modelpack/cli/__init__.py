"""The ``modelpack`` command line; each command lives in its own module, imported only when run."""
