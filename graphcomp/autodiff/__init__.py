"""Reverse-mode automatic differentiation as a graph-to-graph transformation.

Pure: it adds adjoint nodes to a graph and imports no backend and no runtime.
"""

from graphcomp.autodiff.custom import custom_vjp
from graphcomp.autodiff.hessian import hvp
from graphcomp.autodiff.reverse import backpropagate, grad

__all__ = ["backpropagate", "custom_vjp", "grad", "hvp"]
