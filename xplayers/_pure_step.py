r"""The training step as one pure function, compiled where the backend can (JAX).

:meth:`Sequential.train_step <xplayers.network.Sequential.train_step>` runs
the layers one call at a time. On a backend whose record compiles pure
functions (:meth:`Record.jit <xplayers.backend.Record.jit>`: ``jax.jit`` on
JAX) it runs instead :class:`PureStep`, the same step as a function of arrays::

    (params, optimizer state, hyper-parameters, x, t)
        -> (new params, new state, loss, gradients, the values the layers keep)

written with the formulas of :mod:`xplayers.functional` (through
:class:`~xplayers.stateless.Stateless`), with the optimizer's own ``_step``
applied to a stand-in whose state dictionaries hold the arrays passed in. It
is compiled once per structure (network, optimizer class, weight decay on or
off) and traced once per shape and dtype of the batch; the hyper-parameters,
Adam's rate for step :math:`t` and the weight-decay strength are traced as
values, so changing them compiles nothing.

After the step, everything is where the layer path leaves it: the new
parameters in the layers (so in ``network.params``), the new state arrays in
the optimizer's dictionaries (``optimizer.state()``, checkpoints and resume
read them), Adam's ``iter`` counted on the host, and in the layers their
gradients (``network.grads``, ``Affine.dW``, ``Affine.db``) and kept forward
values (``Affine.x``, ``Relu.out``, ``Sigmoid.out``, ``SoftmaxWithLoss.loss``,
``y``, ``t``), so ``layer.backward`` works afterwards as after ``gradient``.

Covered: networks that :func:`~xplayers.stateless.stateless` describes
(``Affine``, ``Relu``, ``Sigmoid``, ending in ``SoftmaxWithLoss``), with all
parameters of one array type and dtype, with or without the book's L2 weight
decay, and the optimizers of :mod:`xplayers.optim` (and subclasses that keep
their ``update``, ``_begin``, ``_step`` and ``_state``). Anything else (a
``Dropout`` or ``BatchNormalization`` layer, an optimizer of your own) runs the
layer path, as on every other backend.

The checks of the layers' inputs (shapes, dtypes, the targets' form) run
when the step is traced, so once per shape. The one check that reads array
values, that labels lie in ``[0, C)``, cannot run inside a compiled
function: the compiled step does not make it (a label outside the range
adds nothing to the loss), and :func:`xplayers.training.train` checks the
labels of the whole dataset once before the first step.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xplayers import functional
from xplayers.backend import Record, namespace, record_of
from xplayers.errors import LayerInputError
from xplayers.layers.affine import check_input
from xplayers.layers.softmax_with_loss import targets
from xplayers.optim import SGD, AdaGrad, Adam, Momentum, Nesterov, Optimizer, RMSprop
from xplayers.stateless import Stateless, stateless

__all__ = ["PureStep", "compiled_step", "optimizer_formulas", "train_step"]

#: The optimizers whose ``_step`` the pure step applies.
BOOK_OPTIMIZERS: tuple[type[Optimizer], ...] = (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)

#: The methods a subclass must keep for the pure step to apply its formulas.
_HOOKS = ("update", "_begin", "_step", "_state")

_FORMULAS: dict[type, type[Optimizer] | None] = {}


def optimizer_formulas(optimizer: object) -> type[Optimizer] | None:
    """The class of :data:`BOOK_OPTIMIZERS` whose update `optimizer` runs unchanged, or None.

    A subclass that overrides ``update``, ``_begin``, ``_step`` or ``_state``
    (or any other object with an ``update``) gets None: its update is its own.

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


class PureStep:
    """One training step of a network structure and an optimizer class, as a pure function.

    Parameters
    ----------
    structure : Stateless
        The network's layers (see :func:`~xplayers.stateless.stateless`).
    optimizer : type
        One of :data:`BOOK_OPTIMIZERS`.
    decayed : tuple of str
        The weights the L2 penalty covers (``W1, W2, ...``); empty for none.

    Attributes
    ----------
    traces : int
        How many times the function ran in Python: under ``jax.jit``, the
        number of times it was traced (once per shape and dtype of the batch).
    """

    def __init__(
        self, structure: Stateless, optimizer: type[Optimizer], decayed: tuple[str, ...] = ()
    ) -> None:
        self.structure = structure
        self.optimizer = optimizer
        self.decayed = decayed
        self.traces = 0

    def __repr__(self) -> str:
        return f"PureStep({self.structure.steps}, {self.optimizer.__name__}, {self.decayed})"

    def __call__(
        self,
        params: Mapping[str, Any],
        stores: Mapping[str, Mapping[str, Any]],
        hyper: Mapping[str, float],
        x: Any,
        t: Any,
    ) -> tuple[Any, ...]:
        """One step: forward, loss, backward, optimizer update.

        Parameters
        ----------
        params : mapping of str to array
            The parameters by the book's names.
        stores : mapping of str to mapping of str to array
            The optimizer's state dictionaries (``{"v": {"W1": ...}}``), one
            array for every parameter.
        hyper : mapping of str to float
            The optimizer's float attributes (``lr``, ``momentum``, Adam's
            rate ``_lr_t`` of this step, ...) and, with weight decay,
            ``weight_decay_lambda``.
        x, t : array
            The batch and its targets.

        Returns
        -------
        tuple
            ``(new_params, new_stores, loss, layer_loss, grads, x0, outs, y, t0)``:
            `loss` includes the weight-decay penalty and `layer_loss` (the
            ``SoftmaxWithLoss.loss``, None when that is `loss`) does not; `grads` are the layers'
            gradients (without the decay term); `x0` is the input as the
            first ``Affine`` keeps it, or None when that is `x` itself; `outs`
            holds each step's output (the last one only when it is not the
            logits); `t0` the targets as the loss layer keeps them, or None
            when that is `t`.
        """
        self.traces += 1
        f = self.structure
        check_input(x, params[f.steps[0][1]])
        logits, kept = f.forward(params, x)
        t_in = t
        t = targets("SoftmaxWithLoss.forward", logits, t)
        layer_loss, y = functional.softmax_cross_entropy(logits, t)
        grads = f.backward(params, kept, y, t)
        loss, total = layer_loss, grads
        if self.decayed:
            lam = hyper["weight_decay_lambda"]
            xp = namespace(loss)
            total = dict(grads)
            for key in self.decayed:  # the order of Sequential.loss and _total_grads
                W = params[key]
                loss = loss + 0.5 * lam * xp.sum(W * W)
                total[key] = grads[key] + lam * W
        opt = self.optimizer.__new__(self.optimizer)
        for name, value in hyper.items():
            setattr(opt, name, value)
        for name, store in stores.items():
            setattr(opt, name, dict(store))
        new = {key: p - opt._step(key, p, total[key]) for key, p in params.items()}
        new_stores = {name: getattr(opt, name) for name in stores}
        x0 = kept[0][0]
        last = len(kept) - (f.steps[-1][0] == "affine")
        outs = [out for _, out in kept[:last]]
        return (
            new,
            new_stores,
            loss,
            layer_loss if self.decayed else None,
            grads,
            None if x0 is x else x0,
            outs,
            y,
            None if t is t_in else t,
        )


@dataclass
class _Compiled:
    """A :class:`PureStep` and the function the record compiled from it."""

    pure: PureStep
    fn: Callable[..., Any]


@dataclass
class _Plan:
    """What the compiled step of one network needs, found once per network."""

    structure: Stateless
    record: Record
    array_type: type
    dtype: Any
    slots: list[tuple[str, Any, str]]  # (key, layer, attribute)
    layers: list[tuple[str, Any, str, str]]  # per step: (kind, layer, W key, b key)
    last: Any
    decayed: tuple[str, ...]
    compiled: dict[tuple[type, bool], _Compiled | None] = field(default_factory=dict)


#: The plan of each network (None: its steps run the layer path).
_PLANS: weakref.WeakKeyDictionary[Any, _Plan | None] = weakref.WeakKeyDictionary()

#: Compiled steps shared by every network of one structure, by (record, structure, ...).
_COMPILED: dict[tuple[str, Stateless, type, tuple[str, ...]], _Compiled | None] = {}


def _plan(network: Any) -> _Plan | None:
    """The plan of `network`, or None when the pure step does not cover it."""
    try:
        structure = stateless(network)
    except LayerInputError:
        return None
    layers = list(network.layers.values())
    slots = [(key, layer, attr) for key, (layer, attr) in network.params.slots.items()]
    values = [getattr(layer, attr) for _, layer, attr in slots]
    record = record_of(values[0])
    kinds = {type(v) for v in values}
    if record is None or len(kinds) != 1 or len({v.dtype for v in values}) != 1:
        return None
    steps = []
    for i, (step, layer) in enumerate(zip(structure.steps, layers, strict=True)):
        if step[0] == "affine" and i > 0 and not layer.input_grad:
            return None  # the layer path refuses this network; let it say so
        steps.append((step[0], layer, *step[1:], "", "")[:4])
    decayed = tuple(k for k in structure.keys if k[:1] == "W" and k[1:].isdigit())
    return _Plan(
        structure, record, kinds.pop(), values[0].dtype, slots, steps, network.last_layer, decayed
    )


def _compiled(plan: _Plan, optimizer: type[Optimizer], decay: bool) -> _Compiled | None:
    key = (optimizer, decay)
    try:
        return plan.compiled[key]
    except KeyError:
        pass
    decayed = plan.decayed if decay else ()
    shared = (plan.record.name, plan.structure, optimizer, decayed)
    if shared not in _COMPILED:
        pure = PureStep(plan.structure, optimizer, decayed)
        fn = plan.record.jit(pure)
        _COMPILED[shared] = None if fn is None else _Compiled(pure, fn)
    found = plan.compiled[key] = _COMPILED[shared]
    return found


def _lookup(network: Any, optimizer: object) -> tuple[_Plan, _Compiled] | None:
    try:
        plan = _PLANS[network]
    except KeyError:
        plan = _PLANS[network] = _plan(network)
    if plan is None:
        return None
    base = optimizer_formulas(optimizer)
    if base is None or network.last_layer is not plan.last:
        return None
    compiled = _compiled(plan, base, bool(network.weight_decay_lambda))
    if compiled is None:
        _PLANS[network] = None  # the record compiles nothing: never ask again
        return None
    return plan, compiled


def compiled_step(network: Any, optimizer: object) -> PureStep | None:
    """The :class:`PureStep` that ``network.train_step(x, t, optimizer)`` compiles, or None.

    None when the step runs the layer path: a backend that does not compile
    (every one but JAX), a network or optimizer the pure step does not cover.

    Examples
    --------
    >>> from xplayers.network import TwoLayerNet
    >>> from xplayers.optim import SGD
    >>> from xplayers._pure_step import compiled_step
    >>> print(compiled_step(TwoLayerNet(4, 5, 3), SGD()))  # NumPy: the layers run
    None
    """
    found = _lookup(network, optimizer)
    return None if found is None else found[1].pure


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
    plan, compiled = found
    params = {key: getattr(layer, attr) for key, layer, attr in plan.slots}
    x, t = network.to_own(x), network.to_own(t)
    kind = plan.array_type
    if type(x) is not kind or type(t) is not kind:
        return NotImplemented
    for p in params.values():
        if type(p) is not kind or p.dtype != plan.dtype:
            return NotImplemented
    state = vars(optimizer)
    stores = {name: value for name, value in state.items() if isinstance(value, dict)}
    for store in stores.values():
        for key, p in params.items():
            if key not in store:  # created as Optimizer._state creates them
                store[key] = namespace(p).zeros_like(p)
    arrays = {name: {key: store[key] for key in params} for name, store in stores.items()}
    before = dict(state)
    optimizer._begin()
    hyper = {
        name: float(value)
        for name, value in state.items()
        if type(value) is float or (type(value) is int and name not in optimizer._counters)
    }
    if compiled.pure.decayed:
        hyper["weight_decay_lambda"] = float(network.weight_decay_lambda)
    try:
        out = compiled.fn(params, arrays, hyper, x, t)
    except BaseException:
        state.update(before)  # Adam's step count as it was
        raise
    return _write_back(plan, stores, x, t, out)


def _write_back(
    plan: _Plan, stores: Mapping[str, dict[str, Any]], x: Any, t: Any, out: tuple[Any, ...]
) -> Any:
    """Put the compiled step's results where the layer path leaves them; return the loss."""
    new, new_stores, loss, layer_loss, grads, x0, outs, y, t0 = out
    for key, layer, attr in plan.slots:
        setattr(layer, attr, new[key])
    for name, values in new_stores.items():
        stores[name].update(values)
    inp = x if x0 is None else x0
    for i, (kind, layer, wk, bk) in enumerate(plan.layers):
        if kind == "affine":
            src = x if i == 0 else inp
            layer.original_x_shape = tuple(src.shape)
            layer._x_dtype = src.dtype
            layer.x = inp
            layer.dW, layer.db = grads[wk], grads[bk]
        else:
            layer.out = outs[i]
        if i < len(outs):
            inp = outs[i]
    last = plan.last
    last.loss = loss if layer_loss is None else layer_loss
    last.y, last.t = y, t if t0 is None else t0
    return loss
