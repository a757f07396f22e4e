"""Neural-network layers, activations, convolutions and pooling: ``gc.nn.dense``, ...

Layers make named parameters in a scope of their own and return tensors (docs/layers.md);
convolutions and pooling work on NCHW tensors (docs/convolutions.md).

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 3), "float32", name="x")
...     y = gc.nn.gelu(gc.nn.layer_norm(gc.nn.dense(x, 4)))
>>> y.shape
('N', 4)
>>> with gc.Graph():
...     x = gc.placeholder((None, 3, 16, 16), "float32", name="x")
...     w = gc.parameter(gc.init.normal((8, 3, 3, 3), std=0.1, seed=0), name="w")
...     y = gc.nn.avg_pool2d(gc.nn.conv2d(x, w, stride=2, padding=1), 2)
>>> y.shape
('N', 8, 4, 4)
"""

from graphcomp.nn.conv import avg_pool2d, conv2d, flatten, max_pool2d
from graphcomp.nn.layers import batch_norm, dense, dropout, embedding, layer_norm
from graphcomp.nn.recurrent import GRUCell, LSTMCell, gru, gru_cell, lstm, lstm_cell
from graphcomp.ops.activations import elu, gelu, leaky_relu, log_sigmoid, silu
from graphcomp.ops.functions import log_softmax, relu, sigmoid, softmax, softplus, tanh

__all__ = [
    "GRUCell",
    "LSTMCell",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "dense",
    "dropout",
    "elu",
    "embedding",
    "flatten",
    "gelu",
    "gru",
    "gru_cell",
    "layer_norm",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "lstm",
    "lstm_cell",
    "max_pool2d",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]
