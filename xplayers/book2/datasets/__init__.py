"""Volume 2's ``dataset`` package: the data sets of the book's examples.

``from xplayers.book2.datasets import sequence`` stands in for the book's
``from dataset import sequence`` (chapters 7 and 8: the addition and date
sets, made by seeded generators, see :mod:`xplayers.book2.datasets.sequence`).
"""
