"""Subcommands of the ``modelshelf`` command line (see ``modelshelf.cli``)."""
