"""The ``ravl`` command line: thin commands, one module per group."""
