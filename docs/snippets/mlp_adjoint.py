"""Print the adjoint listing and the residuals of a 2-layer MLP (used in docs/gradients.md)."""

import numpy as np

import graphcomp as gc


def build_mlp():
    rng = np.random.default_rng(0)
    x = gc.placeholder((None, 4), "float32", name="x")
    y = gc.placeholder((None,), "int64", name="y")
    W1 = gc.parameter(rng.standard_normal((4, 8)).astype("float32"), name="W1")
    b1 = gc.parameter(np.zeros(8, "float32"), name="b1")
    W2 = gc.parameter(rng.standard_normal((8, 3)).astype("float32"), name="W2")
    b2 = gc.parameter(np.zeros(3, "float32"), name="b2")
    hidden = gc.relu(x @ W1 + b1)
    loss = gc.mean(gc.softmax_cross_entropy(hidden @ W2 + b2, y))
    return loss, [W1, b1, W2, b2]


with gc.Graph(name="mlp"):
    loss, params = build_mlp()
    grads = gc.grad(loss, params)
    print(gc.format(grads))

with gc.Graph(name="mlp"):
    loss, params = build_mlp()
    A = gc.adjoint_graph(loss, params)
    print()
    print("residuals (forward values the backward pass reads):")
    for node_id, data in sorted(A.nodes(data=True)):
        if data["role"] == "residual":
            shape = ",".join(str(d) for d in data["shape"])
            print(f"  %{node_id:<3} {data['op']:<12} {data['type']}[{shape}]".ljust(36)
                  + f"bytes: {data['bytes']}")
    print(f"  total: {A.graph['residual_bytes']} bytes")
