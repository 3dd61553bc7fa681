"""The volume 2 utilities (xplayers.book2.util): the book's results on small hand-checked examples.

The references are NumPy transcriptions of the book's ``common/util.py``
written here.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest

from xplayers.book2 import clip_grads


def _book_clip(grads: list[np.ndarray], max_norm: float) -> None:
    total = np.sqrt(sum(np.sum(g**2) for g in grads))
    rate = max_norm / (total + 1e-6)
    if rate < 1:
        for i in range(len(grads)):
            grads[i] *= rate


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grads_matches_the_book(backend: Any, max_norm: float) -> None:
    host = [np.array([[3.0, 0.0], [0.0, 0.0]]), np.array([4.0, 0.0])]  # global norm 5
    want = [g.copy() for g in host]
    _book_clip(want, max_norm)
    grads = [backend.asarray(g) for g in host]
    held = grads[0]
    clip_grads(grads, max_norm)
    for got, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), w, rtol=1e-12)
    if max_norm == 0.5:
        assert np.allclose(backend.to_numpy(grads[0])[0, 0], 0.3)
        if grads[0] is held:  # written in place where the array allows it
            np.testing.assert_allclose(backend.to_numpy(held), want[0], rtol=1e-12)


def _no_compute(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("clip_grads computed a Dask graph (read a value on the host)")


def test_clip_grads_reads_nothing_on_the_host() -> None:
    grads = [da.from_array(np.full((4, 3), 2.0), chunks=2), da.from_array(np.ones(5), chunks=2)]
    with dask.config.set(scheduler=_no_compute):
        clip_grads(grads, 1.0)
    want = [np.full((4, 3), 2.0), np.ones(5)]
    _book_clip(want, 1.0)
    for got, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(got.compute(scheduler="sync"), w, rtol=1e-12)
