"""Neural-network layers and activations: ``gc.nn.dense``, ``gc.nn.batch_norm``, ...

Layers make named parameters in a scope of their own and return tensors (docs/layers.md).

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 3), "float32", name="x")
...     y = gc.nn.gelu(gc.nn.layer_norm(gc.nn.dense(x, 4)))
>>> y.shape
('N', 4)
"""

from graphcomp.nn.layers import batch_norm, dense, embedding, layer_norm
from graphcomp.ops.activations import elu, gelu, leaky_relu, log_sigmoid, silu
from graphcomp.ops.functions import log_softmax, relu, sigmoid, softmax, softplus, tanh

__all__ = [
    "batch_norm", "dense", "elu", "embedding", "gelu", "layer_norm", "leaky_relu",
    "log_sigmoid", "log_softmax", "relu", "sigmoid", "silu", "softmax", "softplus", "tanh",
]
