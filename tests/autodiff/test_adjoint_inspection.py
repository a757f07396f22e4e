"""Inspection of adjoint graphs: networkx tags, adjoint_graph residuals, listing and DOT export."""

import shutil

import numpy as np
import pytest

import graphcomp as gc


def mlp():
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 3), "float64", name="x")
    y = gc.placeholder((None,), "int64", name="y")
    W1 = gc.parameter(rng.standard_normal((3, 4)), name="W1")
    W2 = gc.parameter(rng.standard_normal((4, 2)), name="W2")
    hidden = gc.tanh(x @ W1)
    loss = gc.mean(gc.softmax_cross_entropy(hidden @ W2, y))
    return x, W1, W2, hidden, loss


def test_to_networkx_tags_every_adjoint_node_with_an_existing_forward_node():
    with gc.Graph():
        _, W1, W2, _, loss = mlp()
        grads = gc.grad(loss, [W1, W2])
    G = gc.to_networkx(grads)
    adjoint = [n for n, d in G.nodes(data=True) if d["role"] == "adjoint"]
    # forward_of may be a node the gradients do not read (the loss itself), so ask the graph
    origins = [loss.graph.node(G.nodes[n]["forward_of"]) for n in adjoint]
    assert adjoint and all(o.role == "forward" for o in origins)
    assert loss.node in origins
    forward = [n for n, d in G.nodes(data=True) if d["role"] == "forward"]
    assert all(G.nodes[n]["forward_of"] is None for n in forward)


def test_second_order_adjoint_nodes_point_at_first_order_ones():
    with gc.Graph():
        w = gc.parameter(np.array([0.5, 1.0]), name="w")
        g1 = gc.grad(gc.sum(gc.sin(w)), w)
        g2 = gc.grad(gc.sum(g1), w)
    G = gc.to_networkx(g2)
    origins = {G.nodes[n]["forward_of"] for n in G if n > g1.node.id}
    assert any(w.graph.node(o).role == "adjoint" for o in origins)


def test_adjoint_graph_holds_the_backward_nodes_and_their_residuals():
    with gc.Graph():
        x, W1, W2, hidden, loss = mlp()
        A = gc.adjoint_graph(loss, [W1, W2])
    roles = {d["role"] for _, d in A.nodes(data=True)}
    assert roles == {"adjoint", "residual"}
    residuals = {n: d for n, d in A.nodes(data=True) if d["role"] == "residual"}
    # tanh' is computed from tanh's output, and dW1 = x^T (...): both are kept alive.
    assert hidden.node.id in residuals and x.node.id in residuals
    assert loss.node.id not in A  # the loss value itself is not needed to differentiate it
    assert residuals[x.node.id]["bytes"] == "24*N"  # 3 float64 per row
    assert residuals[W2.node.id]["bytes"] == 64
    assert all(A.nodes[n]["role"] == "adjoint" for n in A.graph["gradients"])
    assert A.graph["wrt"] == [W1.node.id, W2.node.id]
    # every residual feeds an adjoint node, through an edge marked as a residual read
    for r in residuals:
        succ = list(A.successors(r))
        assert succ and all(A.edges[r, s]["residual"] for s in succ)
    total = A.graph["residual_bytes"]
    static = sum(d["bytes"] for d in residuals.values() if isinstance(d["bytes"], int))
    per_n = sum(int(d["bytes"].split("*")[0]) for d in residuals.values()
                if isinstance(d["bytes"], str))
    assert total == f"{static} + {per_n}*N"


def test_adjoint_graph_of_static_shapes_counts_plain_bytes():
    with gc.Graph():
        w = gc.parameter(np.ones((5, 2), "float32"), name="w")
        A = gc.adjoint_graph(gc.sum(gc.exp(w)), w)
    exp_nodes = [d for _, d in A.nodes(data=True) if d["op"] == "exp"]
    assert exp_nodes[0]["role"] == "residual" and exp_nodes[0]["bytes"] == 40
    assert A.graph["residual_bytes"] == 40


def test_format_marks_adjoint_nodes_with_their_forward_origin():
    with gc.Graph():
        w = gc.parameter(np.ones(3), name="w")
        y = gc.exp(w)
        gw = gc.grad(gc.sum(y), w)
    listing = gc.format(gw)
    line = next(ln for ln in listing.splitlines() if ln.startswith(f"%{gw.node.id} ="))
    assert line.endswith(f"# adjoint of %{y.node.id} (exp)")
    assert f"%{y.node.id} = exp %{w.node.id} : f64[3]" in listing


def test_to_dot_styles_forward_adjoint_and_residual_edges_apart():
    with gc.Graph(name="tiny"):
        w = gc.parameter(np.ones(3), name="w")
        y = gc.exp(w)
        gw = gc.grad(gc.sum(y), w)
    text = gc.to_dot([gw])
    assert text.startswith('digraph "tiny" {') and text.rstrip().endswith("}")
    assert f'n{w.node.id} [label="%{w.node.id} parameter \\"w\\"\\nf64[3]"' in text
    assert f"adjoint of %{y.node.id} exp" in text
    assert "shape=ellipse" in text and "shape=box" in text
    # exp's output is read by its adjoint (g * y): a dashed residual edge
    residual_edge = f"n{y.node.id} -> n{gw.node.id} [style=dashed"
    assert residual_edge in text


def test_to_dot_writes_dot_text(tmp_path):
    with gc.Graph():
        w = gc.parameter(np.ones(2), name="w")
        gw = gc.grad(gc.sum(w * w), w)
    path = tmp_path / "g.dot"
    assert gc.to_dot(gw, path) == path.read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_to_dot_renders_svg_with_graphviz(tmp_path):
    with gc.Graph():
        w = gc.parameter(np.ones(2), name="w")
        gw = gc.grad(gc.sum(w * w), w)
    path = tmp_path / "g.svg"
    gc.to_dot(gw, path, format="svg")
    assert "<svg" in path.read_text()


def test_to_dot_names_the_missing_program(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no 'dot' anywhere
    with gc.Graph():
        w = gc.parameter(np.ones(2), name="w")
        gw = gc.grad(gc.sum(w * w), w)
    with pytest.raises(gc.GraphcompError, match="needs the Graphviz program 'dot'"):
        gc.to_dot(gw, tmp_path / "g.png", format="png")
    with pytest.raises(gc.GraphcompError, match="format must be one of"):
        gc.to_dot(gw, tmp_path / "g.pdf", format="pdf")
