"""IR invariants: topological order, validation errors that name the culprit."""
import pytest

from tinyengine.ir import Graph, IRError, Node, QuantParams, Tensor, toposort


def _t(name, shape=(1, 4)):
    return Tensor(name, shape, "int8", QuantParams([0.5], [0]))


def test_toposort_orders_a_shuffled_diamond():
    tensors = {n: _t(n) for n in "abcde"}
    n1 = Node("LOGISTIC", "n1", ["a"], ["b"])
    n2 = Node("LOGISTIC", "n2", ["b"], ["c"])
    n3 = Node("LOGISTIC", "n3", ["b"], ["d"])
    n4 = Node("ADD", "n4", ["c", "d"], ["e"])
    order = toposort([n4, n3, n2, n1], ["a"], tensors)
    pos = {n.name: i for i, n in enumerate(order)}
    assert pos["n1"] < pos["n2"] < pos["n4"] and pos["n1"] < pos["n3"] < pos["n4"]
    Graph(tensors, order, ["a"], ["e"]).validate()


def test_toposort_rejects_cycles():
    tensors = {n: _t(n) for n in "abc"}
    with pytest.raises(IRError, match="cycle"):
        toposort([Node("ADD", "x", ["a", "c"], ["b"]), Node("LOGISTIC", "y", ["b"], ["c"])], ["a"], tensors)


@pytest.mark.parametrize("nodes, outputs, message", [
    ([Node("LOGISTIC", "n", ["zz"], ["b"])], ["b"], "unknown input tensor 'zz'"),
    ([Node("LOGISTIC", "n", ["c"], ["b"]), Node("LOGISTIC", "m", ["a"], ["c"])], ["b"], "used before"),
    ([Node("LOGISTIC", "n", ["a"], ["b"]), Node("LOGISTIC", "m", ["a"], ["b"])], ["b"], "written twice"),
    ([Node("LOGISTIC", "n", ["a"], ["b"])], ["c"], "never produced"),
])
def test_validate_names_the_problem(nodes, outputs, message):
    tensors = {n: _t(n) for n in "abc"}
    with pytest.raises(IRError, match=message):
        Graph(tensors, nodes, ["a"], outputs).validate()


def test_quant_params_per_tensor_and_per_channel():
    q = QuantParams([0.1, 0.2], [0, 0], axis=0)
    assert q.per_channel
    with pytest.raises(IRError):
        q.s
    assert QuantParams(0.25, -3).zp == -3
