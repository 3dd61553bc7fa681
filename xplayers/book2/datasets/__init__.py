"""The data sets of *Deep Learning from Scratch 2* (the book's ``dataset/`` directory).

One module per data set, each with the book's ``load_data``:
:mod:`xplayers.book2.datasets.spiral` (chapter 1's three spirals),
:mod:`xplayers.book2.datasets.ptb` (the Penn Treebank, from files you provide),
:mod:`xplayers.book2.datasets.grammar` (a small generated corpus for language models) and
:mod:`xplayers.book2.datasets.sequence` (chapters 7 and 8: the addition and
date questions, made by seeded generators; ``from xplayers.book2.datasets
import sequence`` stands in for the book's ``from dataset import sequence``).
"""

from __future__ import annotations
