"""The Softmax-with-Loss layer (softmax followed by cross-entropy)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat

from xplayers._validation import describe, fail, float_array, same_backend
from xplayers.backend import namespace, record_of
from xplayers.functional import cross_entropy_backward, labels_in_range, softmax_cross_entropy
from xplayers.layers._base import Layer, LossFn

__all__ = [
    "SoftmaxWithLoss",
    "SoftmaxWithLossFn",
    "check_logits_and_targets",
    "column_labels",
    "target_labels",
    "targets",
]


@dataclass(frozen=True)
class SoftmaxWithLossFn(LossFn):
    """The pure pair of :class:`SoftmaxWithLoss`; ``saved`` holds ``y`` (softmax) and ``t``.

    `t` is taken as checked (:func:`targets`: labels ``(N,)`` or rows ``(N, C)``).
    """

    def check(self, x: Any, t: Any, check_labels: bool | None = None) -> Any:
        """The targets as :func:`targets` checks them (a label column becomes ``(N,)``)."""
        return targets("SoftmaxWithLoss.forward", x, t, check_labels)

    def forward(self, x: Any, t: Any) -> tuple[Any, dict[str, Any]]:
        """``(mean cross-entropy, {"y": softmax(x), "t": t, "loss": loss})``."""
        loss, y = softmax_cross_entropy(x, t)
        return loss, {"y": y, "t": t, "loss": loss}

    def backward(self, saved: Mapping[str, Any], dout: Any = 1.0) -> Any:
        """``dout * (y - t) / N``."""
        return cross_entropy_backward(saved["y"], saved["t"], dout)


class SoftmaxWithLoss(Layer):
    r"""Softmax and mean cross-entropy loss in one layer.

    Forward, for logits `x` of shape ``(N, C)``:

    .. math::
        y = \mathrm{softmax}(x), \qquad
        L = -\frac{1}{N}\sum_n \sum_c t_{nc}\,\log y_{nc}

    computed by log-sum-exp from the logits (no ``1e-7`` guard, exact for
    any logit gap, never negative). Backward:

    .. math::
        dx = \frac{dout}{N}\,(y - t)

    Differences from the book: ``backward(dout)`` multiplies by `dout` (the
    book ignores it), the targets are told apart by shape and dtype rather
    than the book's ``t.size == y.size`` (which fails for one class or an
    empty batch), and the mean loss of an empty batch is 0.

    Parameters
    ----------
    check_labels : bool or None, default None
        Whether ``forward`` checks that integer labels lie in ``[0, C)``
        (the shapes and dtypes are always checked). Reading the answer
        waits for the labels' device, one synchronisation per step on a GPU,
        and forces a lazy (Dask) or traced (JAX ``jit``) computation. None:
        check where that costs nothing of the kind, arrays in host memory
        that are computed eagerly (NumPy, array-api-strict, PyTorch and JAX
        on the CPU), and skip on GPU devices and for lazy or traced arrays.
        True: always check (on a GPU, one synchronisation per call; never
        for lazy or traced arrays, whose values cannot be read). False:
        never check; a label out of range then gives a wrong loss instead
        of an error. :func:`xplayers.training.train` checks the labels of a
        whole data set once before training, whatever this says.

    Attributes
    ----------
    loss : array or None
        The last loss, a 0-d array of `x`'s dtype.
    y : array or None
        ``softmax(x)`` of the last forward, shape ``(N, C)``.
    t : array or None
        The last targets.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import SoftmaxWithLoss
    >>> layer = SoftmaxWithLoss()
    >>> layer.forward(xp.asarray([[0.0, 0.0]]), xp.asarray([1]))
    Array(0.69314718, dtype=array_api_strict.float64)
    >>> layer.backward()
    Array([[ 0.5, -0.5]], dtype=array_api_strict.float64)
    """

    #: See the parameter (a class default too, for layers pickled before it existed).
    check_labels: bool | None = None

    fn: SoftmaxWithLossFn = SoftmaxWithLossFn()

    def __init__(self, check_labels: bool | None = None) -> None:
        if check_labels is not None and not isinstance(check_labels, bool):
            fail("SoftmaxWithLoss", "check_labels", "True, False or None", describe(check_labels))
        self.check_labels = check_labels
        self.loss: Any = None
        self.y: Any = None
        self.t: Any = None

    def forward(self, x: Any, t: Any) -> Any:
        """Return the mean loss of logits `x` ``(N, C)`` against targets `t`.

        Parameters
        ----------
        x : array, shape (N, C), real floating dtype
        t : array
            Integer class labels of shape ``(N,)`` in ``[0, C)`` (or a
            column ``(N, 1)`` of them when ``C > 1``, as the book's
            ``cross_entropy_error`` takes), or one-hot rows / class
            probabilities of shape ``(N, C)``.

        Returns
        -------
        array, shape ()
            The mean loss, in `x`'s dtype.

        Raises
        ------
        LayerInputError
            Wrong shapes or dtypes, arrays of two backends or devices, or
            labels outside ``[0, C)`` (checked as `check_labels` says).
        """
        t = targets("SoftmaxWithLoss.forward", x, t, self.check_labels)
        loss, saved = self.fn.forward(x, t)
        self.take(saved)
        return loss

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a forward's ``loss``, ``y`` and ``t``."""
        if saved is not None:
            self.loss, self.y, self.t = saved["loss"], saved["y"], saved["t"]

    def __repr__(self) -> str:
        arg = "" if self.check_labels is None else f"check_labels={self.check_labels}"
        return f"SoftmaxWithLoss({arg})"

    def backward(self, dout: Any = 1.0) -> Any:
        """Return ``dout * (y - t) / N``, shape ``(N, C)``; `dout` is a scalar or 0-d array."""
        y = self._forward_state(self.y)
        saved = {"y": y, "t": self.t}
        if type(dout) is float:  # the common case: backward() or backward(1.0)
            return self.fn.backward(saved, dout)
        if array_api_compat.is_array_api_obj(dout):
            xp = float_array("SoftmaxWithLoss.backward", "dout", dout)
            same_backend("SoftmaxWithLoss.backward", "dout", dout, "the loss", y)
            if dout.ndim != 0:
                fail(
                    "SoftmaxWithLoss.backward",
                    "dout",
                    "a scalar or 0-d array (the loss is a scalar)",
                    describe(dout),
                )
            dout = dout if dout.dtype == y.dtype else xp.astype(dout, y.dtype)
        elif isinstance(dout, bool) or not isinstance(dout, (int, float)):
            fail(
                "SoftmaxWithLoss.backward", "dout", "a Python float or a 0-d array", describe(dout)
            )
        else:
            dout = float(dout)
        return self.fn.backward(saved, dout)


def column_labels(x: Any, t: Any) -> Any:
    """Integer labels given as a column ``(N, 1)`` (the book accepts them) as ``(N,)``."""
    if (
        getattr(t, "ndim", None) == 2
        and array_api_compat.is_array_api_obj(t)
        and getattr(x, "ndim", 0) == 2
        and x.shape[1] > 1
        and tuple(t.shape) == (x.shape[0], 1)
        and namespace(t).isdtype(t.dtype, "integral")
    ):
        return namespace(t).reshape(t, (x.shape[0],))
    return t


def targets(where: str, x: Any, t: Any, check_labels: bool | None = None) -> Any:
    """Check targets `t` against logits `x` ``(N, C)``; return them, a label column as ``(N,)``.

    The one rule of every function that takes targets: integer labels of
    shape ``(N,)`` in ``[0, C)``, the same as a column ``(N, 1)`` when
    ``C > 1`` (the book's scripts pass those), or one-hot / probability rows
    ``(N, C)``. Label values are read as `check_labels` says (see
    :class:`SoftmaxWithLoss`).
    """
    t = column_labels(x, t)
    check_logits_and_targets(where, x, t, check_labels)
    return t


def target_labels(where: str, x: Any, t: Any, dtype: Any) -> Any:
    """The class labels ``(N,)`` of targets `t` for logits `x` ``(N, C)``, in `dtype`.

    `t` is checked by :func:`targets`; one-hot or probability rows give
    their argmax. The label range is not read here (that would wait for the
    device): callers read or count it where they read their result anyway.
    """
    t = targets(where, x, t, check_labels=False)
    xp = namespace(x)
    labels = xp.argmax(t, axis=1) if t.ndim == 2 else t
    return labels if labels.dtype == dtype else xp.astype(labels, dtype)


def check_logits_and_targets(
    where: str, x: Any, t: Any, check_labels: bool | None = None
) -> ModuleType:
    """Check logits `x` ``(N, C)`` and targets `t` as :class:`SoftmaxWithLoss` takes them.

    Label values are read (one ``bool`` of a 0-d array) as `check_labels`
    says (see :class:`SoftmaxWithLoss`), never for lazy or traced arrays.
    The dtype checks are answered from a cache after the first call with an
    array type and dtype.
    """
    xp = float_array(where, "x", x)
    if x.ndim != 2 or x.shape[1] < 1:
        fail(where, "x", "logits of shape (N, C) with C >= 1", describe(x))
    n, c = x.shape
    # t of x's type is an array (of the same library: compared below with x)
    if type(t) is not type(x) and not array_api_compat.is_array_api_obj(t):
        fail(where, "t", _expected(n, c), describe(t))
    same_backend(where, "t", t, "the logits x", x)
    kind = _target_kind(t, xp)
    if t.ndim == 1 and t.shape[0] == n:
        if kind != "integral":
            fail(where, "t", _expected(n, c), describe(t), "Labels must have an integer dtype")
        read = n and check_labels is not False and _reads_labels(t, check_labels)
        if read and not bool(labels_in_range(t, c)):
            lo, hi = int(xp.min(t)), int(xp.max(t))
            fail(where, "t", f"labels in [0, {c})", f"labels from {lo} to {hi}")
    elif tuple(t.shape) != (n, c) or not kind:
        fail(where, "t", _expected(n, c), describe(t))
    return xp


#: Whether the labels' values are read, by array type, where the type alone decides.
_READS_BY_TYPE: dict[type, bool] = {}


def _reads_labels(t: Any, check_labels: bool | None) -> bool:
    """Whether to read `t`'s values: never lazy or traced; with None only eager host memory."""
    cls = type(t)
    known = _READS_BY_TYPE.get(cls)
    if known is not None:  # host-only, eager libraries (NumPy, array-api-strict)
        return known
    found = record_of(t)
    if found is None or not (found.gpu or found.lazy):
        _READS_BY_TYPE[cls] = True
        return True
    if found.is_lazy(t):
        return False
    return check_labels is True or found.host_key(t) == "cpu"


def _expected(n: int, c: int) -> str:
    column = f" (or a column ({n}, 1) of them)" if c > 1 else ""
    return (
        f"integer class labels of shape ({n},){column} or one-hot/probability rows "
        f"of shape ({n}, {c})"
    )


#: "integral", "other" (real floating or bool: a target row) or "" (refused), by (type, dtype).
_TARGET_KINDS: dict[tuple[type, Any], str] = {}


def _target_kind(t: Any, xp: ModuleType) -> str:
    key = (type(t), t.dtype)  # the type first: never compares two libraries' dtypes
    kind = _TARGET_KINDS.get(key)
    if kind is None:
        if xp.isdtype(t.dtype, "integral"):
            kind = "integral"
        else:
            kind = "other" if xp.isdtype(t.dtype, ("real floating", "bool")) else ""
        _TARGET_KINDS[key] = kind
    return kind
