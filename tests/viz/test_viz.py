"""Views of the flow graph: debugprint, DOT, networkx, render, the kernel report and ``graphnet dot``.

DOT text is checked by parsing it with pydot (an independent parser), counts
against graphs small enough to count by hand, and the kernel plan views
against a hand-made plan that honours the compiler's interface (and against
the real compiler when it is built).
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pydot
import pytest

import graphnet as gn
from graphnet.graph.fgraph import FunctionGraph
from graphnet.errors import GraphnetError
from graphnet.viz import debugprint, function_to_dot, kernel_report, render, to_dot, to_networkx
from graphnet.viz.report import format_bytes

pytestmark = pytest.mark.filterwarnings("ignore:.setParseAction. deprecated")

CPU_MISSING = importlib.util.find_spec("graphnet.compiler.pipeline") is None
HAS_DOT = shutil.which("dot") is not None
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------- the graphs
def dense_relu():
    """relu(x @ W + b) with every shape static: 3 ops, 6 variables, bytes countable by hand."""
    x = gn.placeholder("x", (4, 3))
    W = gn.shared(np.ones((3, 5), "float32"), name="W")
    b = gn.shared(np.zeros(5, "float32"), name="b")
    return x, W, b, gn.relu(gn.dot(x, W) + b)


def mlp_training_step():
    """A 3-layer MLP, its gradients and SGD updates, as the lectures build it."""
    x, y = gn.placeholder("x", (None, 8)), gn.placeholder("y", (None,), "int64")
    rng = np.random.default_rng(0)
    sizes = [(8, 6), (6, 6), (6, 3)]
    params, h = [], x
    for i, (m, n) in enumerate(sizes):
        W = gn.shared(rng.normal(size=(m, n)).astype("float32"), name=f"W{i + 1}")
        b = gn.shared(np.zeros(n, "float32"), name=f"b{i + 1}")
        params += [W, b]
        h = gn.dot(h, W) + b
        if i < len(sizes) - 1:
            h = gn.relu(h)
    loss = gn.nn.cross_entropy(h, y)
    loss.name = "loss"
    grads = gn.grad(loss, params)
    updates = [(p, p - 0.1 * g) for p, g in zip(params, grads)]
    return x, y, loss, params, grads, updates


X, Y, LOSS, PARAMS, GRADS, UPDATES = mlp_training_step()


def parse(dot):
    graphs = pydot.graph_from_dot_data(dot)
    assert graphs and len(graphs) == 1
    return graphs[0]


def all_nodes(graph):
    nodes = list(graph.get_nodes())
    for sub in graph.get_subgraphs():
        nodes += all_nodes(sub)
    return [n for n in nodes if n.get_name() not in ("node", "edge", "graph")]


def all_edges(graph):
    edges = list(graph.get_edges())
    for sub in graph.get_subgraphs():
        edges += all_edges(sub)
    return edges


def attr(node, name):
    value = node.get(name)
    return value.strip('"') if isinstance(value, str) else value


# ----------------------------------------------------------------- debugprint
def test_debugprint_shows_op_name_dtype_and_shape_of_every_node():
    x, W, b, out = dense_relu()
    text = debugprint(out, file="str")
    lines = text.splitlines()
    assert lines[0].startswith("relu  float32 (4, 5)  [id A]")
    assert any("dot  float32 (4, 5)" in line for line in lines)
    assert any("placeholder x  float32 (4, 3)" in line for line in lines)
    assert any("shared W  float32 (3, 5)" in line for line in lines)


def test_debugprint_prints_a_shared_subgraph_once_and_refers_to_it_by_id():
    x = gn.placeholder("x", (None, 3))
    h = gn.relu(gn.dot(x, gn.shared(np.ones((3, 3), "float32"), name="W")))
    out = h + h * 2.0
    text = debugprint(out, file="str")
    expanded = [line for line in text.splitlines() if "relu  float32" in line]
    assert len(expanded) == 1
    relu_id = expanded[0].split("[id ")[1].split("]")[0]
    assert f"relu  [id {relu_id}]  (shown above)" in text
    assert text.count("placeholder x") == 1  # the shared subgraph's inputs are not printed again


def test_debugprint_marks_nodes_built_by_grad_as_backward():
    text = debugprint(GRADS[0], file="str")
    first = text.splitlines()[0]
    assert first.endswith("(backward)")
    forward_lines = [line for line in text.splitlines() if "softmaxcrossentropy  float32" in line]
    assert forward_lines and not any("(backward)" in line for line in forward_lines)


def test_debugprint_prints_outputs_then_updates_of_a_compiled_function():
    fn = gn.function([X, Y], LOSS, updates=UPDATES, backend="reference")
    text = debugprint(fn, file="str")
    assert text.startswith("output 0: ")
    for param in PARAMS:
        assert f"update {param.name} ← " in text


def test_debugprint_writes_to_the_given_stream_and_draws_ascii_on_request(capsys):
    x, W, b, out = dense_relu()
    text = debugprint(out, ascii=True)
    assert capsys.readouterr().out == text
    assert text.isascii() and "|- " in text and "`- " in text


def test_debugprint_survives_a_chain_deeper_than_the_recursion_limit():
    v = gn.placeholder("x", (2,))
    for _ in range(sys.getrecursionlimit() + 100):
        v = gn.exp(v)
    text = debugprint(v, file="str")
    assert text.count("exp  float32") == sys.getrecursionlimit() + 100


# ----------------------------------------------------------------------- DOT
def test_to_dot_parses_with_pydot_and_draws_one_node_per_op():
    graph = parse(to_dot(LOSS))
    ops = [n for n in all_nodes(graph) if n.get_name().startswith("n")]
    fn = gn.function([X, Y], LOSS, backend="reference")
    assert len(ops) == len(fn.fgraph.nodes())


def test_to_dot_draws_placeholders_shared_variables_constants_and_ops_with_distinct_shapes():
    x, W, b, _ = dense_relu()
    out = gn.relu(gn.dot(x, W) + b) * 0.5
    nodes = {n.get_name(): n for n in all_nodes(parse(to_dot(out)))}
    assert attr(nodes[f"v{x.id}"], "shape") == "invhouse"
    assert attr(nodes[f"v{W.id}"], "shape") == "cylinder"
    constants = [n for name, n in nodes.items() if name.startswith("c")]
    assert [attr(c, "shape") for c in constants] == ["plaintext"]
    ops = [n for name, n in nodes.items() if name.startswith("n")]
    assert len(ops) == 4 and {attr(n, "shape") for n in ops} == {"box"}


def test_to_dot_puts_backward_nodes_in_their_own_cluster_and_colour():
    graph = parse(to_dot([LOSS] + GRADS))
    clusters = {s.get_name(): s for s in graph.get_subgraphs()}
    backward = clusters["cluster_backward"]
    inside = {n.get_name() for n in all_nodes(backward)}
    built = FunctionGraph((X, Y), tuple([LOSS] + GRADS))   # the graph as the user built it
    expected = {f"n{node.outputs[0].id}" for node in built.nodes() if node.outputs[0].role == "backward"}
    assert inside == expected
    colours = {attr(n, "fillcolor") for n in all_nodes(backward)}
    forward_colours = {attr(n, "fillcolor") for n in graph.get_nodes() if n.get_name().startswith("n")}
    assert len(colours) == 1 and not colours & forward_colours


def test_to_dot_draws_each_update_as_a_dashed_edge_into_the_shared_variable():
    dot = to_dot(LOSS, updates=UPDATES)
    graph = parse(dot)
    nodes = {n.get_name(): n for n in all_nodes(graph)}
    dashed = [e for e in all_edges(graph) if attr(e, "style") == "dashed"]
    assert len(dashed) == len(UPDATES)
    for edge, (shared, expr) in zip(dashed, UPDATES):
        assert edge.get_source() == f"n{expr.id}"
        target = nodes[edge.get_destination()]
        assert attr(target, "shape") == "cylinder" and f"<b>{shared.name}</b>" in target.get("label")


def test_to_dot_draws_the_optimizer_step_apart_from_the_forward_pass():
    graph = parse(to_dot(LOSS, updates=UPDATES))
    clusters = {s.get_name(): s for s in graph.get_subgraphs()}
    steps = {n.get_name() for n in all_nodes(clusters["cluster_update"])}
    assert steps == {f"n{expr.id}" for _, expr in UPDATES} | {f"n{expr.owner.inputs[1].id}" for _, expr in UPDATES}


def test_to_dot_escapes_names_that_would_break_the_dot_syntax():
    x = gn.placeholder('a "quoted" <name> & more', (2,))
    out = gn.exp(x)
    out.name = "exp<out>"
    graph = parse(to_dot(out, title='title "with" <brackets>'))
    assert len(all_nodes(graph)) == 3


def test_to_dot_needs_no_graphviz_program(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setenv("PATH", "")
    assert to_dot(LOSS).startswith("digraph")


# ------------------------------------------------------------------ networkx
def test_to_networkx_has_a_node_per_variable_and_per_op_and_an_edge_per_read_and_write():
    x, W, b, out = dense_relu()
    graph = to_networkx(out)
    kinds = [d["kind"] for _, d in graph.nodes(data=True)]
    # dot, add, relu; x, W, b and the three results
    assert kinds.count("apply") == 3 and len(graph) == 9
    # x->dot, W->dot, dot->product, product->add, b->add, add->sum, sum->relu, relu->out
    assert graph.number_of_edges() == 8
    assert graph.nodes[x]["kind"] == "placeholder" and graph.nodes[W]["kind"] == "shared"
    assert graph.nodes[out]["shape"] == (4, 5) and graph.nodes[out.owner]["op"] == out.owner.op


def test_to_networkx_records_both_positions_when_a_node_reads_a_variable_twice():
    x = gn.placeholder("x", (3,))
    sq = x * x
    graph = to_networkx(sq)
    assert graph.edges[x, sq.owner]["positions"] == [0, 1]


def test_to_networkx_of_a_training_step_matches_its_graph_and_stays_acyclic():
    import networkx as nx
    fn = gn.function([X, Y], LOSS, updates=UPDATES, backend="reference")
    graph = to_networkx(fn)
    applies = [n for n, d in graph.nodes(data=True) if d["kind"] == "apply"]
    assert len(applies) == len(fn.fgraph.nodes())
    reads = sum(len(set(map(id, node.inputs))) for node in fn.fgraph.nodes())
    writes = sum(len(node.outputs) for node in fn.fgraph.nodes())
    assert graph.number_of_edges() == reads + writes
    assert nx.is_directed_acyclic_graph(graph)
    assert {graph.nodes[n]["stage"] for n in applies} == {"forward", "backward", "update"}
    assert [s for s, _ in graph.graph["updates"]] == PARAMS


# -------------------------------------------------------------------- render
def test_render_without_the_graphviz_program_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(GraphnetError) as err:
        render(LOSS, str(tmp_path / "graph.svg"))
    assert "apt-get install graphviz" in str(err.value) and "pip install graphviz" in str(err.value)
    assert not (tmp_path / "graph.svg").exists()


def test_render_with_an_empty_path_fails_with_the_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphnetError, match="apt-get install graphviz"):
        render(to_dot(LOSS), str(tmp_path / "graph.png"))


def test_render_writes_dot_text_without_graphviz(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    path = render(LOSS, str(tmp_path / "graph.dot"))
    parse(open(path).read())


def test_render_refuses_a_path_whose_format_it_cannot_tell(tmp_path):
    with pytest.raises(GraphnetError, match="format"):
        render(LOSS, str(tmp_path / "graph.xyz"))


@pytest.mark.skipif(not HAS_DOT, reason="the Graphviz `dot` program is not installed")
@pytest.mark.parametrize("ext, magic", [("svg", b"<?xml"), ("png", b"\x89PNG")])
def test_render_draws_svg_and_png_with_graphviz(tmp_path, ext, magic):
    path = render(LOSS, str(tmp_path / f"graph.{ext}"), updates=UPDATES, title="MLP step")
    with open(path, "rb") as f:
        assert f.read(5).startswith(magic[:5])


@pytest.mark.skipif(not HAS_DOT, reason="the Graphviz `dot` program is not installed")
def test_render_runs_the_dot_program_itself_without_the_graphviz_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz now raises ImportError
    path = render(LOSS, str(tmp_path / "graph.svg"))
    assert b"<svg" in open(path, "rb").read()


@pytest.mark.skipif(not HAS_DOT, reason="the Graphviz `dot` program is not installed")
def test_dot_program_accepts_the_training_step_graph_without_warnings():
    done = subprocess.run(["dot", "-Tsvg"], input=to_dot(LOSS, updates=UPDATES).encode(), capture_output=True)
    assert done.returncode == 0 and done.stderr == b""


# ------------------------------------------------------- kernel plan (fake)
@dataclass(eq=False)
class FakeKernel:
    """A kernel as the compiler describes it (``fn.kernels``)."""

    name: str
    nodes: list
    inputs: list
    outputs: list
    is_blas: bool = False
    source: str = ""
    bytes_read: int = None
    bytes_written: int = None
    ops: list = field(default=None)

    def __post_init__(self):
        self.ops = [n.op.name for n in self.nodes]


REASON = "a BLAS product keeps its own buffer; its epilogue reads it"


def fake_compiled_dense_relu(bytes_known=False):
    """relu(x @ W + b) planned as the compiler would: a GEMM, then add+relu fused."""
    x, W, b, out = dense_relu()
    fn = gn.function([x], out, backend="reference", name="dense")
    dot_node, add_node, relu_node = fn.fgraph.nodes()
    product = dot_node.outputs[0]
    gemm = FakeKernel("k0_gemm", [dot_node], [x, W], [product], is_blas=True)
    epilogue = FakeKernel("k1_add_relu", [add_node, relu_node], [product, b], [relu_node.outputs[0]],
                          source="def kernel(...): ...")
    if bytes_known:
        gemm.bytes_read, gemm.bytes_written = 1000, 100
        epilogue.bytes_read, epilogue.bytes_written = 200, 100
    fake = SimpleNamespace(name="dense", backend="cpu", fgraph=fn.fgraph, kernels=[gemm, epilogue],
                           program=SimpleNamespace(refusals=[(product, add_node, REASON)]))
    return fake, (dot_node, add_node, relu_node)


def test_function_to_dot_draws_one_labelled_cluster_per_kernel():
    fake, (dot_node, add_node, relu_node) = fake_compiled_dense_relu()
    graph = parse(function_to_dot(fake))
    clusters = [s for s in graph.get_subgraphs() if s.get_name().startswith("cluster_k")]
    assert [s.get_name() for s in clusters] == ["cluster_k0", "cluster_k1"]
    members = [{n.get_name() for n in all_nodes(s)} for s in clusters]
    assert members == [{f"n{dot_node.outputs[0].id}"}, {f"n{add_node.outputs[0].id}", f"n{relu_node.outputs[0].id}"}]
    labels = [s.get_graph_defaults()[0]["label"] for s in clusters]
    assert "k0_gemm" in labels[0] and "BLAS" in labels[0]
    assert "k1_add_relu" in labels[1] and "add · relu" in labels[1]


def test_function_to_dot_marks_buffers_written_and_intermediates_kept_in_registers():
    fake, (dot_node, add_node, relu_node) = fake_compiled_dense_relu()
    nodes = {n.get_name(): n for n in all_nodes(parse(function_to_dot(fake)))}
    assert nodes[f"n{relu_node.outputs[0].id}"].get("peripheries") == "2"
    assert "dashed" in attr(nodes[f"n{add_node.outputs[0].id}"], "style")


def test_function_to_dot_gives_the_reason_on_edges_between_kernels():
    fake, (dot_node, add_node, relu_node) = fake_compiled_dense_relu()
    edges = all_edges(parse(function_to_dot(fake)))
    crossing = [e for e in edges if e.get_source() == f"n{dot_node.outputs[0].id}"]
    assert len(crossing) == 1 and REASON in attr(crossing[0], "tooltip")


def test_kernel_report_counts_bytes_saved_against_the_unfused_plan():
    fake, _ = fake_compiled_dense_relu()
    report = kernel_report(fake)
    rows = {line.split()[1]: line.split() for line in report.splitlines() if line.strip().startswith("#")}
    # float32: x 4x3 = 48 B, W 3x5 = 60 B, b 20 B, each (4, 5) result 80 B.
    # gemm reads x, W and writes the product: 108 B + 80 B, the same unfused.
    assert rows["k0_gemm"][-8:] == ["108", "B", "80", "B", "188", "B", "0", "B"]
    # fused add+relu reads product and b (100 B), writes the result (80 B); unfused,
    # add moves 80+20+80 B and relu 80+80 B: 340 B, so 160 B saved.
    assert rows["k1_add_relu"][-8:] == ["100", "B", "80", "B", "340", "B", "160", "B"]
    assert "add · relu" not in report and "add, relu" in report


def test_kernel_report_uses_the_compilers_byte_estimates_when_it_has_them():
    fake, _ = fake_compiled_dense_relu(bytes_known=True)
    rows = {line.split()[1]: line.split() for line in kernel_report(fake).splitlines() if line.strip().startswith("#")}
    assert rows["k0_gemm"][-8:-4] == ["1.0", "kB", "100", "B"]


def test_kernel_report_gives_a_reason_for_every_adjacent_pair_not_fused():
    fake, (dot_node, add_node, _) = fake_compiled_dense_relu()
    report = kernel_report(fake)
    assert f"{dot_node.outputs[0].describe()} (#0) -> {add_node.outputs[0].describe()} (#1): {REASON}" in report
    fake.program.refusals = []
    assert "(the compiler recorded no reason)" in kernel_report(fake)


def test_kernel_report_takes_the_batch_size_from_input_shapes():
    x, y = gn.placeholder("x", (None, 3)), None
    W = gn.shared(np.ones((3, 5), "float32"), name="W")
    out = gn.relu(gn.dot(x, W))
    fn = gn.function([x], out, backend="reference")
    dot_node, relu_node = fn.fgraph.nodes()
    fake = SimpleNamespace(name="f", fgraph=fn.fgraph, program=SimpleNamespace(refusals=[]),
                           kernels=[FakeKernel("k0", [dot_node, relu_node], [x, W], [out])])
    assert "?" in kernel_report(fake)
    report = kernel_report(fake, input_shapes={"x": (10, 3)})
    row = [line for line in report.splitlines() if line.strip().startswith("#0")][0].split()
    # reads x (120 B) + W (60 B), writes 200 B; unfused the product is also written and read: +400 B.
    assert row[-8:] == ["180", "B", "200", "B", "780", "B", "400", "B"]


def test_kernel_report_of_a_function_without_kernels_says_so():
    fn = gn.function([X, Y], LOSS, backend="reference")
    assert "has no kernels" in kernel_report(fn)


# ----------------------------------------------------- kernel plan (compiler)
@pytest.mark.skipif(CPU_MISSING, reason="cpu backend not built yet: graphnet.compiler.pipeline does not exist")
def test_the_fused_plan_of_an_mlp_with_batch_norm_has_one_cluster_per_kernel():
    x, y = gn.placeholder("x", (None, 8)), gn.placeholder("y", (None,), "int64")
    rng = np.random.default_rng(1)
    W1 = gn.shared(rng.normal(size=(8, 6)).astype("float32"), name="W1")
    gamma, beta = gn.shared(np.ones(6, "float32"), name="gamma"), gn.shared(np.zeros(6, "float32"), name="beta")
    W2 = gn.shared(rng.normal(size=(6, 3)).astype("float32"), name="W2")
    h = gn.relu(gn.nn.batch_norm(gn.dot(x, W1), gamma, beta))
    loss = gn.nn.cross_entropy(gn.dot(h, W2), y)
    params = [W1, gamma, beta, W2]
    updates = [(p, p - 0.1 * g) for p, g in zip(params, gn.grad(loss, params))]
    fn = gn.function([x, y], loss, updates=updates, backend="cpu", training=True)
    fn(rng.normal(size=(16, 8)).astype("float32"), rng.integers(0, 3, 16))
    graph = parse(function_to_dot(fn))
    clusters = [s for s in graph.get_subgraphs() if s.get_name().startswith("cluster_k")]
    assert len(clusters) == len(fn.kernels)
    # A node a later kernel recomputes (fusion rule 8: batch norm's x - mean in dx) is drawn once,
    # in its home kernel, the first that computes it.
    from graphnet.viz.walk import home_kernels
    home = home_kernels(fn.kernels)
    assert any(home[n] != i for i, k in enumerate(fn.kernels) for n in k.nodes)
    for i, (cluster, kernel) in enumerate(zip(clusters, fn.kernels)):
        assert kernel.name in cluster.get_graph_defaults()[0]["label"]
        assert {n.get_name() for n in all_nodes(cluster)} == {f"n{n.outputs[0].id}" for n in kernel.nodes
                                                              if home[n] == i}
    report = kernel_report(fn)
    assert sum(line.strip().startswith("#") for line in report.splitlines()) == len(fn.kernels)


# ------------------------------------------- the report after a call: the last call's shapes
def report_rows(report):
    """{kernel name: (read, written, unfused, saved)} of a kernel report's table."""
    rows = {}
    for line in report.splitlines():
        words = line.split()
        if words and words[0].startswith("#") and words[0][1:].isdigit():
            cells = line.rsplit(None, 8)[-8:]
            rows[words[1]] = tuple(" ".join(cells[i:i + 2]) for i in range(0, 8, 2))
    return rows


@pytest.fixture(scope="module")
def mlp_step_and_batch():
    x, y = gn.placeholder("x", (None, 6)), gn.placeholder("y", (None,), "int64")
    W = gn.shared(np.full((6, 4), 0.1, "float32"), name="W")
    loss = gn.nn.cross_entropy(gn.relu(gn.dot(x, W)), y)
    step = gn.function([x, y], loss, updates=[(W, W - 0.1 * gn.grad(loss, W))], backend="cpu", name="step")
    return step, np.ones((8, 6), "float32"), np.zeros(8, "int64")


@pytest.mark.skipif(CPU_MISSING, reason="cpu backend not built yet: graphnet.compiler.pipeline does not exist")
def test_the_report_before_any_call_prints_question_marks_for_sizes_known_at_run_time():
    x, W = gn.placeholder("x", (None, 6)), gn.shared(np.ones((6, 4), "float32"), name="W")
    fresh = gn.function([x], gn.dot(x, W), backend="cpu")
    assert "?" in kernel_report(fresh) and "last call" not in kernel_report(fresh)


@pytest.mark.skipif(CPU_MISSING, reason="cpu backend not built yet: graphnet.compiler.pipeline does not exist")
def test_the_report_after_a_call_shows_every_byte_count_for_that_calls_shapes(mlp_step_and_batch):
    step, xb, yb = mlp_step_and_batch
    step(xb, yb)
    report = kernel_report(step)
    assert report.splitlines()[0].endswith("bytes for the last call, x=(8, 6), y=(8,)")
    table = report[:report.index("not fused")]
    assert "?" not in table
    rows = report_rows(report)
    for kernel in step.kernels:      # the runtime's own counts for that signature
        read, written = rows[kernel.name][:2]
        assert (read, written) == (format_bytes(kernel.bytes_read), format_bytes(kernel.bytes_written)), kernel.name


@pytest.mark.skipif(CPU_MISSING, reason="cpu backend not built yet: graphnet.compiler.pipeline does not exist")
def test_the_first_gemm_moves_what_numpy_says_its_operands_and_results_hold(mlp_step_and_batch):
    # The first product takes the bias and ReLU as its epilogue: it reads x, W and b, and
    # writes the activations (and what the backward pass keeps of them), each (batch, units).
    step, xb, yb = mlp_step_and_batch
    step(xb, yb)
    gemm = next(k for k in step.kernels if k.is_blas)
    x = next(v for v in gemm.inputs if v.owner is None and not hasattr(v, "get_value"))
    operands = {v: v.get_value() for v in gemm.inputs if hasattr(v, "get_value")}
    W = next(value for value in operands.values() if value.ndim == 2)
    result = xb @ W
    assert x.shape[1:] == xb.shape[1:]
    read, written, _, _ = report_rows(kernel_report(step))[gemm.name]
    assert read == format_bytes(xb.nbytes + sum(value.nbytes for value in operands.values()))
    assert written == format_bytes(sum(result.size * np.dtype(v.dtype).itemsize for v in gemm.outputs))


@pytest.mark.skipif(CPU_MISSING, reason="cpu backend not built yet: graphnet.compiler.pipeline does not exist")
def test_the_report_gives_the_calls_minimum_traffic_and_the_kernels_ratio_to_it(mlp_step_and_batch):
    step, xb, yb = mlp_step_and_batch
    step(xb, yb)
    W = step.program.fgraph.updates[0][0].get_value()
    least = xb.nbytes + yb.nbytes + W.nbytes + 4 + W.nbytes   # x, y, W read; the loss, W written
    line = next(l for l in kernel_report(step).splitlines() if l.startswith("minimum traffic"))
    moved = sum(k.bytes_read + k.bytes_written for k in step.kernels)
    assert f": {format_bytes(least)}; the kernels move {format_bytes(moved)} ({moved / least:.2f}x" in line


@pytest.mark.skipif(CPU_MISSING, reason="cpu backend not built yet: graphnet.compiler.pipeline does not exist")
def test_input_shapes_given_to_the_report_win_over_the_last_call(mlp_step_and_batch):
    step, xb, yb = mlp_step_and_batch
    step(xb, yb)
    report = kernel_report(step, input_shapes={"x": (128, 6), "y": (128,)})
    assert report.splitlines()[0].endswith("bytes for x=(128, 6), y=(128,)")


# ------------------------------------------------------------------- the CLI
SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import graphnet as gn
    assert sys.argv[1:] == ARGS
    x = gn.placeholder("x", (None, 3))
    W = gn.shared(np.ones((3, 2), "float32"), name="W")
    loss = gn.mean(gn.relu(gn.dot(x, W)))
    step = gn.function([x], loss, updates=[(W, W - 0.1 * gn.grad(loss, W))], backend="reference", name="step")
    predict = gn.function([x], gn.dot(x, W), backend="reference", name="predict")
""")


def write_script(tmp_path, body="", args=()):
    path = tmp_path / "model.py"
    path.write_text(SCRIPT.replace("ARGS", repr(list(args))) + textwrap.dedent(body))
    return path


def test_cli_dot_exports_every_function_a_script_compiles(tmp_path, capsys):
    from graphnet.viz.cli import main
    script = write_script(tmp_path)
    assert main([str(script), "--output", str(tmp_path / "g.dot")]) == 0
    step, predict = tmp_path / "g-0-step.dot", tmp_path / "g-1-predict.dot"
    assert f"wrote {step}" in capsys.readouterr().out
    step_graph = parse(step.read_text())
    assert any(attr(e, "style") == "dashed" for e in all_edges(step_graph))  # the update of W
    assert "<b>predict</b>" in predict.read_text()


def test_cli_dot_draws_the_variables_in_graphnet_outputs(tmp_path):
    from graphnet.viz.cli import main
    script = write_script(tmp_path, "__graphnet_outputs__ = [loss]\n")
    assert main([str(script), "-o", str(tmp_path / "g.txt")]) == 0
    assert (tmp_path / "g.txt").read_text().startswith("truediv")


def test_cli_dot_passes_arguments_after_a_double_dash_to_the_script(tmp_path):
    from graphnet.viz.cli import main
    script = write_script(tmp_path, args=["--epochs", "1"])
    assert main([str(script), "-o", str(tmp_path / "g.dot"), "--function", "predict", "--", "--epochs", "1"]) == 0
    assert (tmp_path / "g.dot").exists()


def test_cli_dot_fused_refuses_functions_without_kernels(tmp_path, capsys):
    from graphnet.viz.cli import main
    script = write_script(tmp_path)
    assert main([str(script), "-o", str(tmp_path / "g.dot"), "--fused"]) == 2
    assert "backend=\"cpu\"" in capsys.readouterr().err


def test_recording_functions_puts_function_init_back():
    from graphnet.viz.cli import recording_functions
    from graphnet.function import Function
    original = Function.__init__
    with recording_functions() as created:
        fn = gn.function([X, Y], LOSS, backend="reference")
    assert created == [fn] and Function.__init__ is original


def test_cli_dot_runs_as_a_module(tmp_path):
    script = write_script(tmp_path)
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", "graphnet.viz.cli", str(script), "--function", "0",
                           "-o", str(tmp_path / "step.dot")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    parse((tmp_path / "step.dot").read_text())


def test_cli_dot_registers_as_a_subcommand_of_python_m_graphnet(tmp_path):
    import argparse
    from graphnet.viz.cli import add_parser
    parser = argparse.ArgumentParser(prog="python -m graphnet")
    add_parser(parser.add_subparsers(dest="command", required=True))
    script = write_script(tmp_path, args=["-q"])
    args = parser.parse_args(["dot", "--fused", str(script), "-o", str(tmp_path / "g.dot"), "--function", "step",
                              "--", "-q"])
    assert args.func(args) == 2  # --fused, given before the script, applies: the function has no kernels
    args = parser.parse_args(["dot", str(script), "-o", str(tmp_path / "g.dot"), "--function", "step", "--", "-q"])
    assert args.func(args) == 0 and (tmp_path / "g.dot").exists()


# A script that trains after compiling: the part after the first call must not run unless --run.
TRAINING = """
for _ in range(3):
    step(np.ones((2, 3), "float32"))
late = gn.function([x], gn.relu(gn.dot(x, W)), backend="reference", name="late")
open(MARKER, "w").close()
"""


def write_training_script(tmp_path, extra=""):
    marker = tmp_path / "trained"
    return write_script(tmp_path, TRAINING.replace("MARKER", repr(str(marker))) + extra), marker


def test_cli_dot_stops_the_script_at_its_first_call_and_draws_what_was_compiled(tmp_path, capsys):
    from graphnet.viz.cli import main
    script, marker = write_training_script(tmp_path)
    assert main([str(script), "-o", str(tmp_path / "g.dot")]) == 0
    out = capsys.readouterr().out
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.glob("g*.dot")) == ["g-0-step.dot", "g-1-predict.dot"]
    assert (f"stopped {script} when it first called a compiled function (step), after 2 compiled functions "
            "(--run runs it to its end)") in out


def test_cli_dot_run_runs_the_whole_script_and_draws_every_function(tmp_path):
    from graphnet.viz.cli import main
    script, marker = write_training_script(tmp_path)
    assert main([str(script), "-o", str(tmp_path / "g.dot"), "--run"]) == 0
    assert marker.exists()
    assert sorted(p.name for p in tmp_path.glob("g*.dot")) == ["g-0-step.dot", "g-1-predict.dot", "g-2-late.dot"]


def test_cli_dot_function_stops_as_soon_as_that_function_is_compiled(tmp_path, capsys):
    from graphnet.viz.cli import main
    script, marker = write_training_script(tmp_path, "raise SystemExit('never reached')\n")
    assert main([str(script), "-o", str(tmp_path / "g.dot"), "--function", "predict"]) == 0
    assert "stopped" in capsys.readouterr().out and not marker.exists()
    assert "<b>predict</b>" in (tmp_path / "g.dot").read_text()


def test_cli_dot_reports_a_wrong_function_at_the_first_call_without_training(tmp_path, capsys):
    from graphnet.viz.cli import main
    script, marker = write_training_script(tmp_path)
    assert main([str(script), "-o", str(tmp_path / "g.dot"), "--function", "late"]) == 2
    err = capsys.readouterr().err
    assert not marker.exists() and len(err.strip().splitlines()) == 1
    assert "--function late: no such function; the script compiled 0: step, 1: predict before it was stopped" in err
    assert "add --run" in err


def test_cli_dot_skips_a_function_whose_graph_is_drawn_already(tmp_path, capsys):
    from graphnet.viz.cli import main
    # The same graph built again from the same line: new variables (new ids), the same drawing.
    script = write_script(tmp_path, "for _ in range(2):\n"
                                    "    f = gn.function([x], gn.exp(x), backend='reference', name='predict')\n")
    assert main([str(script), "-o", str(tmp_path / "g.dot")]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("g*.dot")) == ["g-0-step.dot", "g-1-predict.dot",
                                                                "g-2-predict.dot"]
    assert f"skipped predict: the same graph as {tmp_path / 'g-2-predict.dot'}" in out


def test_cli_dot_writes_relative_to_the_working_directory_and_prints_full_paths(tmp_path, monkeypatch, capsys):
    from graphnet.viz.cli import main
    script = write_script(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main([str(script), "-o", "g.dot", "--function", "step"]) == 0
    assert f"wrote {work / 'g.dot'}" in capsys.readouterr().out


def test_cli_dot_runs_a_script_on_until_it_defines_graphnet_outputs(tmp_path):
    from graphnet.viz.cli import main
    script, marker = write_training_script(tmp_path, "__graphnet_outputs__ = [loss]\n")
    assert main([str(script), "-o", str(tmp_path / "g.txt")]) == 0
    assert marker.exists() and (tmp_path / "g.txt").read_text().startswith("truediv")
