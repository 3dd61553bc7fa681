"""Volume 2's datasets (the book's ``dataset/`` package)."""
