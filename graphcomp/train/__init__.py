"""Training: optimizers compiled into the step, the fit loop, checkpoints, initialisers, data.

>>> import graphcomp as gc
>>> gc.optim.Adam(lr=1e-3).lr, gc.init.zeros((2,)).dtype
(0.001, dtype('float32'))
"""

from graphcomp.train import data, init, optim
from graphcomp.train.checkpoint import load, save
from graphcomp.train.fit import History, fit

__all__ = ["History", "data", "fit", "init", "load", "optim", "save"]
