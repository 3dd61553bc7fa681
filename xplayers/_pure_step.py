r"""The training step as one pure function, compiled where the backend can (JAX).

:meth:`Sequential.train_step <xplayers.network.Sequential.train_step>` runs
the layers one call at a time. On a backend whose record compiles pure
functions (:meth:`Record.jit <xplayers.backend.Record.jit>`: ``jax.jit`` on
JAX) it runs instead :class:`PureStep`, the same step as a function of arrays::

    (params, optimizer state, layer state, hyper-parameters, x, t)
        -> (new params, new optimizer state, loss, new layer state,
            gradients, what each layer saved)

made of the network's :class:`~xplayers.network.chain.Chain` (the layers'
own pure pairs) and the optimizer's own rule (:attr:`Optimizer.step
<xplayers.optim.Optimizer.step>`, applied by :func:`xplayers.optim.apply_step`).
It covers every network whose layers have pure pairs (every layer of the
library: Dropout draws its masks inside the compiled step, the same masks
the layers draw; BatchNorm's running averages are state in and out), with
or without the book's L2 weight decay, and the optimizers of
:mod:`xplayers.optim` (and subclasses that keep their ``update``, ``step``,
``begin_step`` and ``_state``). It is compiled once per structure (the
chain, the optimizer class, weight decay on or off) and traced once per
shape and dtype of the batch; the hyper-parameters, Adam's rate for step
:math:`t` and the weight-decay strength are traced as values.

After the step, everything is where the layer path leaves it, each object
taking its own values through its public methods: the new parameters
through ``network.params``, the optimizer's state through
:meth:`Optimizer.take_step_state <xplayers.optim.Optimizer.take_step_state>`
(Adam's ``iter`` counted on the host), and in each layer, through
:meth:`Layer.take <xplayers.layers.Layer.take>`, what its pair saved, its
gradients and its new state, so ``network.grads``, ``Affine.x``,
``Dropout.mask``, the running averages and ``layer.backward`` work as after
``gradient``. Nothing of the step is read back on the host: Dropout keeps
its new count as the step's array, which the next step takes as it is, and
reads it only when ``Dropout.count`` is asked for (a checkpoint asks).

The checks of the layers' inputs (shapes, dtypes, the targets' form) run
when the step is traced, so once per shape. The one check that reads array
values, that labels lie in ``[0, C)``, cannot run inside a compiled
function: the compiled step does not make it (a label outside the range
adds nothing to the loss), and :func:`xplayers.training.train` checks the
labels of the whole dataset once before the first step.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from xplayers.backend import Record, record_of
from xplayers.errors import LayerInputError
from xplayers.network.chain import Chain, ChainResult
from xplayers.optim import SGD, AdaGrad, Adam, Momentum, Nesterov, Optimizer, RMSprop, apply_step

__all__ = ["PureStep", "compiled_step", "optimizer_formulas", "train_step"]

#: The optimizers whose rule the pure step applies.
BOOK_OPTIMIZERS: tuple[type[Optimizer], ...] = (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)

#: The methods a subclass must keep for the pure step to apply its rule.
_HOOKS = ("update", "begin_step", "step", "_state", "step_state", "take_step_state")

_FORMULAS: dict[type, type[Optimizer] | None] = {}


def optimizer_formulas(optimizer: object) -> type[Optimizer] | None:
    """The class of :data:`BOOK_OPTIMIZERS` whose update `optimizer` runs unchanged, or None.

    A subclass that overrides ``update``, ``step``, ``begin_step`` or the
    state methods (or any other object with an ``update``) gets None: its
    update is its own.

    Examples
    --------
    >>> from xplayers.optim import SGD, Adam
    >>> from xplayers._pure_step import optimizer_formulas
    >>> class Logged(SGD):
    ...     def update(self, params, grads):
    ...         print("update")
    ...         super().update(params, grads)
    >>> optimizer_formulas(Adam()).__name__, optimizer_formulas(Logged())
    ('Adam', None)
    """
    cls = type(optimizer)
    try:
        return _FORMULAS[cls]
    except KeyError:
        pass
    base = next((c for c in cls.__mro__ if c in BOOK_OPTIMIZERS), None)
    if base is not None and any(getattr(cls, h) is not getattr(base, h) for h in _HOOKS):
        base = None
    _FORMULAS[cls] = base
    return base


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


class PureStep:
    """One training step of a chain and an optimizer class, as a pure function.

    Parameters
    ----------
    chain : Chain
        The network's structure.
    optimizer : type
        One of :data:`BOOK_OPTIMIZERS`.
    decay : bool
        Whether the book's L2 weight decay applies (its strength is an input).

    Attributes
    ----------
    traces : int
        How many times the function ran in Python: under ``jax.jit``, the
        number of times it was traced (once per shape and dtype of the batch).
    static : dict
        What the layers saved that is not an array (input shapes, dtypes,
        the training flag), by the batch's shapes and dtypes: a compiled
        function returns arrays only, and these are fixed by the shapes.
    """

    def __init__(self, chain: Chain, optimizer: type[Optimizer], decay: bool = False) -> None:
        self.chain = chain
        self.optimizer = optimizer
        self.decay = decay
        self.traces = 0
        self.static: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}

    def __repr__(self) -> str:
        return f"PureStep({self.chain.names}, {self.optimizer.__name__}, decay={self.decay})"

    @staticmethod
    def signature(x: Any, t: Any) -> tuple[Any, ...]:
        """The key of :attr:`static` for a batch."""
        return (tuple(x.shape), str(x.dtype), tuple(t.shape), str(t.dtype))

    def __call__(
        self,
        params: Mapping[str, Any],
        opt_state: Mapping[str, Mapping[str, Any]],
        state: Mapping[str, Mapping[str, Any]],
        hyper: Mapping[str, Any],
        x: Any,
        t: Any,
    ) -> tuple[Any, ...]:
        """One step: forward, loss, backward, optimizer update.

        Parameters
        ----------
        params : mapping of str to array
            The parameters by the network's keys.
        opt_state : mapping of str to mapping of str to array
            The optimizer's state (:meth:`Optimizer.step_state`).
        state : mapping of str to mapping
            The layers' state by layer name (:meth:`Chain.state_of`).
        hyper : mapping
            ``{"step": the rule's keyword arguments, "weight_decay": lambda}``.
        x, t : array
            The batch and its targets.

        Returns
        -------
        tuple
            ``(new_params, new_opt_state, loss, new_state, layer_loss,
            layer_grads, saved_arrays, loss_saved)``.
        """
        self.traces += 1
        r = self.chain.evaluate(
            params, state, x, t, train=True, weight_decay=hyper.get("weight_decay", 0.0)
        )
        new, new_opt = apply_step(self.optimizer.step, params, r.grads, opt_state, hyper["step"])
        arrays = tuple({k: v for k, v in s.items() if _is_array(v)} for s in r.saved)
        self.static[self.signature(x, t)] = tuple(
            {k: v for k, v in s.items() if not _is_array(v)} for s in r.saved
        )
        return new, new_opt, r.loss, r.state, r.layer_loss, r.layer_grads, arrays, r.loss_saved


#: Per network: the record that compiles its steps, or None (its steps run the layers).
_RECORDS: weakref.WeakKeyDictionary[Any, Record | None] = weakref.WeakKeyDictionary()

#: Compiled steps shared by every network of one structure, by (record, chain, class, decay).
_COMPILED: dict[tuple[str, Chain, type, bool], tuple[PureStep, Callable[..., Any]] | None] = {}


def _record(network: Any) -> Record | None:
    """The record that compiles `network`'s steps (its parameters' backend), or None."""
    try:
        return _RECORDS[network]
    except KeyError:
        pass
    values = list(network.params.values())
    found = record_of(values[0]) if values else None
    if found is not None and found.jit(lambda a: a) is None:
        found = None
    _RECORDS[network] = found
    return found


def _lookup(network: Any, optimizer: object) -> tuple[Chain, PureStep, Callable[..., Any]] | None:
    record = _record(network)
    if record is None:
        return None
    base = optimizer_formulas(optimizer)
    if base is None:
        return None
    try:
        chain = Chain.from_network(network)
    except LayerInputError:
        return None  # a layer of the user's own: the layer path runs it
    decay = bool(network.weight_decay_lambda) and bool(chain.decayed)
    key = (record.name, chain, base, decay)
    if key not in _COMPILED:
        pure = PureStep(chain, base, decay)
        fn = record.jit(pure)
        _COMPILED[key] = None if fn is None else (pure, fn)
    found = _COMPILED[key]
    return None if found is None else (chain, *found)


def compiled_step(network: Any, optimizer: object) -> PureStep | None:
    """The :class:`PureStep` that ``network.train_step(x, t, optimizer)`` compiles, or None.

    None when the step runs the layer path: a backend that does not compile
    (every one but JAX), a layer or optimizer of the user's own.

    Examples
    --------
    >>> from xplayers.network import TwoLayerNet
    >>> from xplayers.optim import SGD
    >>> from xplayers._pure_step import compiled_step
    >>> print(compiled_step(TwoLayerNet(4, 5, 3), SGD()))  # NumPy: the layers run
    None
    """
    found = _lookup(network, optimizer)
    return None if found is None else found[1]


def train_step(network: Any, x: Any, t: Any, optimizer: Any) -> Any:
    """Run one compiled training step of `network`; NotImplemented when it is not covered.

    Parameters
    ----------
    network : Sequential
    x, t : array
        The batch and its targets; NumPy arrays are first moved to the
        network's backend (``network.to_own``).
    optimizer : Optimizer

    Returns
    -------
    array, shape () or NotImplemented
        The loss before the update, or NotImplemented: run the layer path
        (which also reports every input it refuses).
    """
    found = _lookup(network, optimizer)
    if found is None:
        return NotImplemented
    chain, pure, fn = found
    params = dict(network.params)
    x, t = network.to_own(x), network.to_own(t)
    kinds = {type(p) for p in params.values()}
    if len(kinds) != 1 or type(x) not in kinds or type(t) not in kinds:
        return NotImplemented
    if len({p.dtype for p in params.values()}) != 1:
        return NotImplemented
    hyper: dict[str, Any] = {"step": copy.copy(optimizer).begin_step()}  # counted once it ran
    if pure.decay:
        hyper["weight_decay"] = float(network.weight_decay_lambda)
    opt_state = optimizer.step_state(params)
    out = fn(params, opt_state, chain.state_of(network), hyper, x, t)
    new, new_opt, loss, state, layer_loss, layer_grads, arrays, loss_saved = out
    optimizer.begin_step()
    optimizer.take_step_state(new_opt)
    for key, value in new.items():
        network.params[key] = value
    static = pure.static[pure.signature(x, t)]
    saved = tuple({**s, **a} for s, a in zip(static, arrays, strict=True))
    result = ChainResult(loss, layer_grads, state, layer_loss, layer_grads, saved, loss_saved)
    chain.take(network, result)
    return loss
