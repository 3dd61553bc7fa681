"""The version of xplayers, in one place (read by the package, files and the command line)."""

__version__ = "0.1.0"
