"""Inspection: text listings, networkx/DOT export of graphs and adjoint graphs."""
