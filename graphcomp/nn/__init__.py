"""Neural-network building blocks over NCHW tensors: ``gc.nn.conv2d``, pooling and flatten.

>>> import graphcomp as gc
>>> with gc.Graph():
...     x = gc.placeholder((None, 3, 16, 16), "float32", name="x")
...     w = gc.parameter(gc.init.normal((8, 3, 3, 3), std=0.1, seed=0), name="w")
...     y = gc.nn.avg_pool2d(gc.nn.conv2d(x, w, stride=2, padding=1), 2)
>>> y.shape
('N', 8, 4, 4)
"""

from graphcomp.nn.conv import avg_pool2d, conv2d, flatten, max_pool2d

__all__ = ["avg_pool2d", "conv2d", "flatten", "max_pool2d"]
