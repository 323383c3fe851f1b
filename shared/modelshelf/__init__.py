"""modelshelf: off-the-shelf model servers for Seldon Core and KServe."""

__version__ = "0.1.0"
