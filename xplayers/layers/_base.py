"""The base classes shared by every layer: the pure pair (:class:`LayerFn`) and the book's class.

Each layer's math is one :class:`LayerFn`: a frozen, hashable object (its
hyper-parameters only: a stride, a ratio) with two pure functions,

* ``forward(params, x, state, *, train) -> (y, saved, new_state)``
* ``backward(params, saved, dy, *, input_grad=True) -> (dx, grads)``

that call the formulas of :mod:`xplayers.functional` and keep nothing.
``params`` and ``state`` map the layer's own names (:attr:`LayerFn.param_names`,
:attr:`LayerFn.state_names`) to arrays; ``saved`` is what backward needs (a
dict). The book's class (:class:`Layer`) checks its arguments, calls its
``fn`` and sets its attributes (``x``, ``dW``, ``mask``, ...) from ``saved``
and ``grads``; :class:`xplayers.network.chain.Chain` calls the same pairs
for a whole network (the compiled JAX step, data-parallel gradients).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from xplayers._validation import describe, fail, float_array, like, same_backend
from xplayers.errors import LayerStateError

__all__ = ["NO_STATE", "Layer", "LayerFn", "LossFn"]

#: The state of a layer without state (never written to).
NO_STATE: Mapping[str, Any] = {}


@dataclass(frozen=True)
class LayerFn:
    """A layer's math as a pair of pure functions (see the module notes).

    Subclasses are frozen dataclasses of the layer's hyper-parameters, so
    two layers of one kind and configuration have equal, hashable functions
    (a compiled step is shared by every network of one structure).
    """

    #: The layer's parameter names (``("W", "b")``), keys of ``params`` and ``grads``.
    param_names: ClassVar[tuple[str, ...]] = ()
    #: The names of the state the forward takes and returns (running averages, a seed).
    state_names: ClassVar[tuple[str, ...]] = ()

    def check(self, params: Mapping[str, Any], x: Any) -> None:
        """Refuse an input the layer cannot take (``LayerInputError`` naming the layer).

        Reads shapes and dtypes only, so it runs on traced and lazy arrays
        too: a network's chain checks its input with its first layer's.
        """

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(y, saved, new_state)`` of input `x`; `train` picks training behaviour."""
        raise NotImplementedError

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(dx, grads)`` from the forward's `saved`; ``dx`` is None without `input_grad`."""
        raise NotImplementedError


@dataclass(frozen=True)
class LossFn:
    """A loss layer's math: ``forward(x, t) -> (loss, saved)``, ``backward(saved, dout) -> dx``."""

    def check(self, x: Any, t: Any, check_labels: bool | None = None) -> Any:
        """Check targets `t` against the logits `x`; return them as :meth:`forward` takes them."""
        return t

    def forward(self, x: Any, t: Any) -> tuple[Any, dict[str, Any]]:
        """The scalar loss of logits `x` against targets `t`, and what backward needs."""
        raise NotImplementedError

    def backward(self, saved: Mapping[str, Any], dout: Any = 1.0) -> Any:
        """The gradient of ``dout * loss`` with respect to the logits."""
        raise NotImplementedError


class Layer:
    """A layer with the book's interface: ``forward(x)`` then ``backward(dout)``.

    Subclasses keep what ``backward`` needs as attributes during ``forward``
    and expose their trainable arrays through :attr:`params` and the matching
    gradients through :attr:`grads` (same keys).
    """

    @property
    def params(self) -> dict[str, Any]:
        """Trainable arrays by name (the very arrays the layer computes with)."""
        return {}

    @property
    def grads(self) -> dict[str, Any]:
        """Gradients of :attr:`params` from the last ``backward`` (``None`` before)."""
        return {}

    #: The layer's pure pair (a :class:`LayerFn`, or a :class:`LossFn` for a loss layer).
    fn: Any = None

    def fn_state(self) -> dict[str, Any]:
        """The layer's state for :attr:`fn` by :attr:`LayerFn.state_names` (empty without)."""
        return {}

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep what a pure forward saved, a backward's gradients, a new state.

        The layer's own ``forward`` and ``backward`` call this with what its
        :attr:`fn` returned; a network step that ran the pure functions
        itself (the compiled JAX step) hands each layer its values the same
        way, so the layer afterwards holds what its own methods would have
        left (``Affine.x``, ``dW``, ``Dropout.mask``, running averages).
        """

    #: ``forward(x)`` (``forward(x, t)`` for a loss layer) computes the output.
    forward: Callable[..., Any]
    #: ``backward(dout)`` returns the gradient with respect to the input.
    backward: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        """Same as ``forward(*args)``."""
        return self.forward(*args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _forward_state(self, value: Any) -> Any:
        if value is None:
            name = type(self).__name__
            raise LayerStateError(
                f"{name}.backward: called before {name}.forward; run forward first "
                "(backward needs the values forward keeps)"
            )
        return value

    def _dout(self, dout: Any, out: Any) -> Any:
        """Check the upstream gradient against the forward output `out`; cast its dtype."""
        if like(dout, out) and dout.shape == out.shape:  # the common case
            return dout
        where = f"{type(self).__name__}.backward"
        xp = float_array(where, "dout", dout)
        same_backend(where, "dout", dout, "the forward output", out)
        if tuple(dout.shape) != tuple(out.shape):
            fail(
                where, "dout", f"the shape of the forward output {tuple(out.shape)}", describe(dout)
            )
        return dout if dout.dtype == out.dtype else xp.astype(dout, out.dtype)
