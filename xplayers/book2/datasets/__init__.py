"""The data sets of *Deep Learning from Scratch 2* (the book's ``dataset/`` directory).

One module per data set, each with the book's ``load_data``:
:mod:`xplayers.book2.datasets.spiral` (chapter 1's three spirals).
"""

from __future__ import annotations
