"""Volume 2's training step as one compiled function (JAX).

On a backend whose record compiles pure functions (:meth:`Record.jit
<xplayers.backend.Record.jit>`: ``jax.jit`` on JAX), :meth:`RnnlmTrainer.train_step
<xplayers.book2.RnnlmTrainer.train_step>` and :meth:`Trainer.fit
<xplayers.book2.Trainer.fit>` run :class:`CompiledStep`, the body of the
book's loop as a function of arrays::

    (distinct weights, carried recurrent states, optimizer state,
     hyper-parameters, batch) -> (loss, new weights, new optimizer state,
                                  new recurrent states, gradients)

It is the model's own ``forward`` and ``backward`` traced once with the
weights and states swapped in, the tied weights' gradients summed once
(:class:`~xplayers.book2._training.SharedWeights`), clipping as array
operations (:func:`~xplayers.book2.clip_grads`) and the optimizer's pure
``rule`` (:mod:`xplayers.book2.optimizer`), so it gives what the layer path
gives. It is compiled once per model, optimizer class and ``max_grad``,
and traced once per shape and dtype of the batch; the hyper-parameters
(Adam's rate of step ``t`` included) are traced as values, so changing
``optimizer.lr`` between epochs (the book's chapter 6) does not compile
again.

What the trace cannot do
------------------------
- Dropout masks are drawn on the host from each layer's own generator, as
  the layers draw them: inside the compiled step through an ordered
  ``io_callback`` (:func:`xplayers.functional.host_values`), so the masks
  and the generators' states are those of the layer path.
- Checks that read ids (in ``[0, V)``) are listed while tracing
  (:func:`~xplayers.book2._common.deferred_id_checks`) and made on the
  batch at every step, before any weight changes.
- Stateful recurrent layers without a state start from zeros, which the
  layers would make themselves, so one trace serves the first batch and
  the next.

After a step the objects hold what the layer path leaves, each through its
own lists and attributes: the weights in every ``params`` list (tied ones
included), the gradients in every ``grads`` list, ``h``/``c`` of the
stateful layers, the optimizer's state lists (and Adam's ``iter``). What a
forward keeps for its backward (caches, masks) is not kept: those
attributes are None, and a ``backward`` needs a ``forward`` first.

Covered: models made of the layers in :data:`PURE_LAYERS` (every language
model and sequence-to-sequence model of :mod:`xplayers.book2`, the
word2vec models without negative sampling, whose sampler draws on the
host) and the optimizers of :mod:`xplayers.book2.optimizer` (subclasses
that keep ``update``, ``begin_step`` and ``rule``). Anything else runs the
layer path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import array_api_compat

from xplayers._validation import traced
from xplayers.backend import Record, record_of
from xplayers.book2._cells import put
from xplayers.book2._common import IdCheck, check_ids, deferred_id_checks
from xplayers.book2._training import SharedWeights, holders
from xplayers.book2.attention import Attention, AttentionWeight, TimeAttention, WeightSum
from xplayers.book2.layers import (
    Affine,
    Dropout,
    Embedding,
    MatMul,
    Sigmoid,
    SigmoidWithLoss,
    Softmax,
    SoftmaxWithLoss,
)
from xplayers.book2.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from xplayers.book2.time_layers import (
    TimeAffine,
    TimeBiLSTM,
    TimeDropout,
    TimeEmbedding,
    TimeGRU,
    TimeLSTM,
    TimeRNN,
    TimeSigmoidWithLoss,
    TimeSoftmaxWithLoss,
)
from xplayers.book2.util import clip_grads

__all__ = ["PURE_LAYERS", "CompiledStep", "compiled_step", "optimizer_rule", "run_compiled"]

#: The layers whose forward and backward trace: array operations only, host draws
#: through :func:`~xplayers.functional.host_values`.
PURE_LAYERS: tuple[type, ...] = (
    Affine,
    Attention,
    AttentionWeight,
    Dropout,
    Embedding,
    MatMul,
    Sigmoid,
    SigmoidWithLoss,
    Softmax,
    SoftmaxWithLoss,
    TimeAffine,
    TimeAttention,
    TimeBiLSTM,
    TimeDropout,
    TimeEmbedding,
    TimeGRU,
    TimeLSTM,
    TimeRNN,
    TimeSigmoidWithLoss,
    TimeSoftmaxWithLoss,
    WeightSum,
)

#: The optimizers whose ``rule`` the compiled step applies.
OPTIMIZERS: tuple[type, ...] = (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)

_HOOKS = ("update", "begin_step", "rule", "states")

#: A compiled step's key: the optimizer class and ``max_grad``.
StepKey = tuple[type, float | None]


def optimizer_rule(optimizer: object) -> type | None:
    """The class of :data:`OPTIMIZERS` whose ``update`` `optimizer` runs unchanged, or None."""
    cls = type(optimizer)
    base = next((c for c in cls.__mro__ if c in OPTIMIZERS), None)
    if base is None or any(getattr(cls, h) is not getattr(base, h) for h in _HOOKS):
        return None
    return base


def _has_tracer(value: Any, depth: int = 3) -> bool:
    if traced(value):
        return True
    if depth and isinstance(value, (list, tuple)):
        return any(_has_tracer(v, depth - 1) for v in value)
    if depth and isinstance(value, dict):
        return any(_has_tracer(v, depth - 1) for v in value.values())
    return False


class _Snapshot:
    """The attributes of some objects and the items of their ``params``/``grads`` lists.

    :meth:`restore` puts them back: a trace leaves no traced value behind.
    """

    def __init__(self, objects: list[Any]) -> None:
        self.attrs = [(obj, dict(vars(obj))) for obj in objects]
        lists = {id(lst): lst for obj in objects for lst in (obj.params, obj.grads)}
        self.items = [(lst, list(lst)) for lst in lists.values() if type(lst) is list]

    def restore(self) -> None:
        for obj, attrs in self.attrs:
            vars(obj).clear()
            vars(obj).update(attrs)
        for lst, items in self.items:
            lst[:] = items


class CompiledStep:
    """One model's training step for one optimizer class and ``max_grad``, compiled.

    Parameters
    ----------
    model : object
        A model of :data:`PURE_LAYERS` (``forward(x, t)``, ``backward()``,
        ``params``, ``grads``).
    shared : SharedWeights
        The model's ties.
    rule : type
        One of :data:`OPTIMIZERS`.
    max_grad : float or None
        Clip the gradients' global norm to it.
    record : Record
        The backend that compiles (JAX).

    Attributes
    ----------
    traces : int
        How many times the step was traced (once per shape and dtype of the batch).
    host_bound : bool
        Whether a trace failed because the model's own Python needs values on
        the host (a NumPy array written with a traced gradient): from then on
        the layers run every step.
    """

    def __init__(
        self, model: Any, shared: SharedWeights, rule: type, max_grad: float | None, record: Record
    ) -> None:
        self.model = model
        self.shared = shared
        self.rule = rule
        self.max_grad = max_grad
        self.traces = 0
        self.holders = holders(model)
        self.cells = [h for h in self.holders if getattr(h, "stateful", False) and hasattr(h, "h")]
        #: Per batch signature: the id checks, each with the batch input (0: x, 1: t) it
        #: reads; None where a check reads ids computed inside the step (the layers run).
        self.checks: dict[tuple[Any, ...], list[tuple[int, IdCheck]] | None] = {}
        #: Where gradients go: (list, index, position in ``model.params``).
        self._grad_targets: list[tuple[list[Any], int, int]] = []
        #: Attributes holding what a forward keeps for its backward.
        self._forward_values: list[tuple[Any, str]] = []
        #: Whether a trace found the model's Python reading or writing values on the host.
        self.host_bound = False
        fn = record.jit(self._pure)
        self._fn: Callable[..., Any] = self._pure if fn is None else fn

    @staticmethod
    def signature(x: Any, t: Any) -> tuple[Any, ...]:
        """The key of :attr:`checks` for a batch."""
        return (tuple(x.shape), str(x.dtype), tuple(t.shape), str(t.dtype))

    def _pure(
        self,
        kept: list[Any],
        states: list[tuple[Any, ...]],
        opt_state: list[list[Any]],
        hyper: dict[str, Any],
        x: Any,
        t: Any,
    ) -> tuple[Any, list[Any], list[list[Any]], list[tuple[Any, ...]], list[Any]]:
        """The step as a function of arrays, run by the layers on traced values."""
        self.traces += 1
        model, shared = self.model, self.shared
        snapshot = _Snapshot(self.holders)
        try:
            shared.hand_back(shared.unique(model.params), list(kept))
            for cell, state in zip(self.cells, states, strict=True):
                cell.h = state[0]
                if len(state) > 1:
                    cell.c = state[1]
            with deferred_id_checks() as checks:
                loss = model.forward(x, t)
                model.backward()
            self.checks[self.signature(x, t)] = _on_inputs(checks, x, t)  # ids dropped
            per_position = shared.gradients(model.grads)
            grads = shared.summed(per_position)
            if self.max_grad is not None:
                clip_grads(grads, self.max_grad)
            new_kept, new_opt = self._update(kept, grads, opt_state, hyper)
            new_states = [_state_of(cell) for cell in self.cells]
            self._remember_places(per_position)
            # what the layer path leaves in the layers: a weight's own gradient, clipped
            # there (written in place on NumPy), a tied one's unsummed and unclipped
            left = list(per_position)
            for u, i in enumerate(shared.keep):
                if not shared.merged[u]:
                    left[i] = grads[u]
            return loss, new_kept, new_opt, new_states, left
        finally:
            snapshot.restore()

    def _update(
        self, kept: list[Any], grads: list[Any], opt_state: list[list[Any]], hyper: dict[str, Any]
    ) -> tuple[list[Any], list[list[Any]]]:
        new_kept: list[Any] = []
        new_opt: list[list[Any]] = [[] for _ in opt_state]
        rule: Any = self.rule
        for u, (p, g) in enumerate(zip(kept, grads, strict=True)):
            new, state = rule.rule(p, g, tuple(s[u] for s in opt_state), **hyper)
            new_kept.append(new)
            for lst, value in zip(new_opt, state, strict=True):
                lst.append(value)
        return new_kept, new_opt

    def _remember_places(self, per_position: list[Any]) -> None:
        """Where the traced gradients lie, and which attributes hold forward values."""
        position = {id(g): k for k, g in enumerate(per_position)}
        targets = []
        lists = {id(h.grads): h.grads for h in self.holders}
        lists[id(self.model.grads)] = self.model.grads
        for lst in lists.values():
            for n, g in enumerate(lst):
                if id(g) in position:
                    targets.append((lst, n, position[id(g)]))
        self._grad_targets = targets
        forward = []
        for obj in self.holders:
            for name, value in vars(obj).items():
                if name in ("params", "grads") or (obj in self.cells and name in ("h", "c")):
                    continue
                if _has_tracer(value):
                    forward.append((obj, name))
        self._forward_values = forward

    def __call__(self, optimizer: Any, x: Any, t: Any) -> Any:
        """Run one step on the batch `x`, `t` and hand its results to the objects; the loss.

        NotImplemented where the step cannot be compiled for this batch
        (nothing is changed then: run the layers).
        """
        model, shared = self.model, self.shared
        kept = shared.unique(model.params)
        states = [self._state_in(cell, x) for cell in self.cells]
        opt_state = [list(s) for s in optimizer.states(kept)]
        hyper = copy.copy(optimizer).begin_step()  # counted once the step is taken
        sig = self.signature(x, t)
        traced_before = sig in self.checks
        if traced_before:
            if self.checks[sig] is None:
                return NotImplemented
            _check(self.checks[sig], x, t)
        if self.host_bound:
            return NotImplemented
        try:
            out = self._fn(kept, states, opt_state, hyper, x, t)
        except TypeError:
            if traced_before:
                raise
            # The model's own Python needs a traced value on the host (the book's decoders
            # write a step's gradient into a NumPy array, say): nothing changed, and the
            # layers run it, raising anew whatever is wrong with the batch itself.
            self.host_bound = True
            return NotImplemented
        if not traced_before:
            _check(self.checks[sig], x, t)
        if self.checks[sig] is None:
            return NotImplemented
        loss, new_kept, new_opt, new_states, grads = out
        optimizer.begin_step()
        for name, values in zip(optimizer.state_names, new_opt, strict=True):
            setattr(optimizer, name, list(values))
        shared.hand_back(kept, new_kept)
        for lst, n, k in self._grad_targets:
            put(lst, n, grads[k])
        for cell, state in zip(self.cells, new_states, strict=True):
            cell.h = state[0]
            if len(state) > 1:
                cell.c = state[1]
        for obj, name in self._forward_values:
            setattr(obj, name, None)
        return loss

    @staticmethod
    def _state_in(cell: Any, x: Any) -> tuple[Any, ...]:
        """A stateful layer's carried state, zeros ``(len(x), H)`` where it has none."""
        Wh = cell.params[1]
        xp = array_api_compat.array_namespace(Wh)
        shape = (int(x.shape[0]), int(Wh.shape[0]))
        names = ("h", "c") if hasattr(cell, "c") else ("h",)
        values = [getattr(cell, name) for name in names]
        return tuple(
            xp.zeros(shape, dtype=Wh.dtype, device=array_api_compat.device(Wh)) if v is None else v
            for v in values
        )


def _state_of(cell: Any) -> tuple[Any, ...]:
    return (cell.h, cell.c) if hasattr(cell, "c") else (cell.h,)


def _on_inputs(checks: list[IdCheck], x: Any, t: Any) -> list[tuple[int, IdCheck]] | None:
    """Each check with the input it reads (0: `x`, 1: `t`); None where one cannot be made.

    A check of ids computed inside the step (a slice of `t`, say) is covered
    when every integer input is checked at least as strictly (no
    ``ignore_label``, at most as many rows); otherwise None: the layers
    must run to check them.
    """
    out: list[tuple[int, IdCheck]] = []
    derived = []
    for c in checks:
        if c.ids is x:
            out.append((0, c._replace(ids=None)))
        elif c.ids is t:
            out.append((1, c._replace(ids=None)))
        else:
            derived.append(c)
    integer = [i for i, a in enumerate((x, t)) if "int" in str(a.dtype)]
    for c in derived:
        for i in integer:
            if not any(
                j == i and d.ignore_label is None and d.num_rows <= c.num_rows for j, d in out
            ):
                return None
    return out


def _check(checks: list[tuple[int, IdCheck]] | None, x: Any, t: Any) -> None:
    for i, c in checks or ():
        check_ids(c.where, c.arg, (x, t)[i], c.num_rows, c.ignore_label)


def _covered(model: Any) -> bool:
    """Whether every layer of `model` (objects with ``params``/``grads``) traces.

    A function set on one of them (a ``forward`` of one's own, say) may do
    anything on the host: the layers run it.
    """
    found = holders(model)
    for h in found:
        if any(callable(v) and not isinstance(v, type) for v in vars(h).values()):
            return False
        inner = [o for o in holders(h) if o is not h and o.params is not h.params]
        if not inner and type(h) not in PURE_LAYERS:
            return False
    return True


def compiled_step(
    cache: dict[StepKey, CompiledStep | None],
    model: Any,
    shared: SharedWeights,
    optimizer: Any,
    max_grad: float | None,
) -> CompiledStep | None:
    """The compiled step of `model` and `optimizer` (made once and kept in `cache`), or None.

    None where the layer path runs: a backend that compiles nothing (every
    one but JAX), a layer or optimizer outside what the step covers.
    """
    rule = optimizer_rule(optimizer)
    params = model.params
    if rule is None or not params:
        return None
    key = (rule, max_grad)
    if key not in cache:
        record = record_of(params[0])
        step = None
        if (
            record is not None
            and record.jit(lambda a: a) is not None
            and len({type(p) for p in params}) == 1
            and _covered(model)
        ):
            step = CompiledStep(model, shared, rule, max_grad, record)
        cache[key] = step
    return cache[key]


def run_compiled(
    cache: dict[StepKey, CompiledStep | None],
    model: Any,
    shared: SharedWeights,
    optimizer: Any,
    max_grad: float | None,
    x: Any,
    t: Any,
) -> Any:
    """One compiled step (the loss), or NotImplemented: run the layer path."""
    step = compiled_step(cache, model, shared, optimizer, max_grad)
    if step is None:
        return NotImplemented
    ref = model.params[0]
    if type(x) is not type(ref) or type(t) is not type(ref):
        return NotImplemented
    return step(optimizer, x, t)
