"""The layers of *Deep Learning from Scratch 2*, with the book's names and list conventions.

``from xplayers.book2 import *`` stands in for the book's
``from common.layers import *`` and ``from common.time_layers import *``:
:class:`MatMul`, :class:`Affine`, :class:`Softmax`, :class:`SoftmaxWithLoss`,
:class:`Sigmoid`, :class:`SigmoidWithLoss`, :class:`Dropout`,
:class:`Embedding`, :class:`RNN`, :class:`TimeRNN`, :class:`LSTM`,
:class:`TimeLSTM`, :class:`GRU`, :class:`TimeGRU`, :class:`TimeEmbedding`,
:class:`TimeAffine`, :class:`TimeSoftmaxWithLoss`, :class:`TimeDropout`,
:class:`TimeBiLSTM` and :class:`TimeSigmoidWithLoss`; it also stands for
``common/optimizer.py``, ``common/util.py``, ``common/trainer.py``
(:class:`Trainer`) and chapter 4's ``negative_sampling_layer.py``
(:class:`EmbeddingDot`, :class:`UnigramSampler`,
:class:`NegativeSamplingLoss`), and has the word2vec models of chapters 3
and 4 (:class:`SimpleCBOW`, :class:`SimpleSkipGram`, :class:`CBOW`,
:class:`SkipGram`), and the language models of chapters 5 to 7
(:class:`SimpleRnnlm`, :class:`Rnnlm`, :class:`BetterRnnlm`,
:class:`RnnlmGen`, :class:`BetterRnnlmGen`, :mod:`xplayers.book2.rnnlm`)
with their :class:`RnnlmTrainer`. Volume 2's data sets are in
:mod:`xplayers.book2.datasets`.

Conventions kept from the book: ``layer.params`` and ``layer.grads`` are
lists in the same order; ``forward``/``backward``; loss layers take
``forward(xs, ts)`` and ``backward(dout=1)``; recurrent layers have
``stateful``, ``set_state``, ``reset_state`` and keep ``h`` (``c``) and
``dh``; :class:`TimeDropout` has ``train_flg``; :class:`TimeSoftmaxWithLoss`
has ``ignore_label = -1``.

Gradients are written into ``grads[i]`` (``grads[i][...] = dW``, as the
book does) where the array allows it, and replace ``grads[i]`` where arrays
are immutable (JAX) or lazy (Dask); every list holding the old array then
gets the new one, so the book's ``optimizer.update(model.params,
model.grads)`` trains on every backend. Weights built with NumPy while
another backend is current are moved there once, tied weights staying
tied; this takes the place of the book's ``config.GPU``, and
:func:`sync_host` (called by the trainers at the end of ``fit``) writes
the trained weights back into those NumPy arrays (details:
:mod:`xplayers.book2._common`, :mod:`xplayers.book2._cells` and the docs'
volume 2 page).

Chapters 7 and 8 are here too: the attention layers of
``ch08/attention_layer.py`` (:class:`WeightSum`, :class:`AttentionWeight`,
:class:`Attention`, :class:`TimeAttention`) and the models of
``ch07/seq2seq.py``, ``ch07/peeky_seq2seq.py`` and
``ch08/attention_seq2seq.py`` (:class:`Seq2seq`, :class:`PeekySeq2seq`,
:class:`AttentionSeq2seq` and their encoders and decoders);
``xplayers.book2.datasets.sequence`` is the book's ``dataset/sequence.py``.

The math is the pure functions of :mod:`xplayers.sequence` and
:mod:`xplayers.functional`; every backend of xplayers runs it.
"""

from __future__ import annotations

from xplayers.book2 import np
from xplayers.book2._cells import sync_host
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
from xplayers.book2.negative_sampling import EmbeddingDot, NegativeSamplingLoss, UnigramSampler
from xplayers.book2.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from xplayers.book2.rnnlm import (
    BaseModel,
    BetterRnnlm,
    BetterRnnlmGen,
    Rnnlm,
    RnnlmGen,
    SimpleRnnlm,
)
from xplayers.book2.rnnlm_trainer import RnnlmTrainer
from xplayers.book2.seq2seq import (
    AttentionDecoder,
    AttentionEncoder,
    AttentionSeq2seq,
    Decoder,
    Encoder,
    PeekyDecoder,
    PeekySeq2seq,
    Seq2seq,
)
from xplayers.book2.time_layers import (
    GRU,
    LSTM,
    RNN,
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
from xplayers.book2.trainer import Trainer
from xplayers.book2.util import (
    analogy,
    clip_grads,
    convert_one_hot,
    cos_similarity,
    create_co_matrix,
    create_contexts_target,
    eval_perplexity,
    eval_seq2seq,
    most_similar,
    normalize,
    ppmi,
    preprocess,
    to_cpu,
    to_gpu,
)
from xplayers.book2.word2vec import CBOW, SimpleCBOW, SimpleSkipGram, SkipGram

__all__ = [
    "CBOW",
    "GRU",
    "LSTM",
    "RNN",
    "SGD",
    "AdaGrad",
    "Adam",
    "Affine",
    "Attention",
    "AttentionDecoder",
    "AttentionEncoder",
    "AttentionSeq2seq",
    "AttentionWeight",
    "BaseModel",
    "BetterRnnlm",
    "BetterRnnlmGen",
    "Decoder",
    "Dropout",
    "Embedding",
    "EmbeddingDot",
    "Encoder",
    "MatMul",
    "Momentum",
    "NegativeSamplingLoss",
    "Nesterov",
    "PeekyDecoder",
    "PeekySeq2seq",
    "RMSprop",
    "Rnnlm",
    "RnnlmGen",
    "RnnlmTrainer",
    "Seq2seq",
    "Sigmoid",
    "SigmoidWithLoss",
    "SimpleCBOW",
    "SimpleRnnlm",
    "SimpleSkipGram",
    "SkipGram",
    "Softmax",
    "SoftmaxWithLoss",
    "TimeAffine",
    "TimeAttention",
    "TimeBiLSTM",
    "TimeDropout",
    "TimeEmbedding",
    "TimeGRU",
    "TimeLSTM",
    "TimeRNN",
    "TimeSigmoidWithLoss",
    "TimeSoftmaxWithLoss",
    "Trainer",
    "UnigramSampler",
    "WeightSum",
    "analogy",
    "clip_grads",
    "convert_one_hot",
    "cos_similarity",
    "create_co_matrix",
    "create_contexts_target",
    "eval_perplexity",
    "eval_seq2seq",
    "most_similar",
    "normalize",
    "np",
    "ppmi",
    "preprocess",
    "sync_host",
    "to_cpu",
    "to_gpu",
]
