# The general tensor operations in PyTorch, as ops.smil runs them (scripts/bench ops).
import time
import torch

torch.manual_seed(0)
a = torch.randn(20000, 64)
b = torch.randn(20000, 64)
bias = torch.randn(64)
w64 = torch.randn(64, 64)
big = torch.randn(64, 256, 256)
labels = torch.randint(0, 64, (20000,))
idx = torch.randint(0, 64, (20000, 8))
rows = torch.randint(0, 20000, (5000,))
groups = torch.randint(0, 1000, (20000, 64))
pooled = torch.randn(1000, 64)
x = torch.randn(20000, 64, requires_grad=True)
w = torch.randn(64, 64, requires_grad=True)
bag = torch.randn(1, 8000, 1024)
w1 = (torch.randn(1024, 256) * 0.03).requires_grad_()
w2 = (torch.randn(1024, 256) * 0.03).requires_grad_()
wa = (torch.randn(256, 1) * 0.06).requires_grad_()


def bench(name, f):
    for _ in range(3):
        f()
    t0 = time.perf_counter()
    f()
    once = time.perf_counter() - t0
    reps = max(1, int(0.01 / max(once, 1e-6)))
    ts = []
    for _ in range(11):
        t1 = time.perf_counter()
        for _ in range(reps):
            f()
        ts.append((time.perf_counter() - t1) / reps)
    print(f"RESULT name=op_{name} value={sorted(ts)[5] * 1000.0} unit=ms", flush=True)


def attention(h):
    scores = torch.tanh(h @ w1) * torch.sigmoid(h @ w2)
    att = (scores @ wa).softmax(1)
    return (att * h).sum(dim=1)


def step(loss):
    loss.backward()
    x.grad = None
    w.grad = None


def no_grad(f):
    with torch.no_grad():
        return f()


bench("mul_sum", lambda: (a * b).sum())
bench("add_broadcast", lambda: a + bias)
bench("relu", lambda: a.relu())
bench("exp", lambda: a.exp())
bench("tanh", lambda: a.tanh())
bench("sigmoid", lambda: a.sigmoid())
bench("gt_where", lambda: torch.where(a > 0.0, a, b))
bench("sum_dim0", lambda: a.sum(dim=0))
bench("sum_dim1", lambda: a.sum(dim=1))
bench("mean", lambda: a.mean())
bench("max_dim1", lambda: a.max(dim=1))
bench("softmax_dim1", lambda: a.softmax(1))
bench("log_softmax_dim1", lambda: a.log_softmax(1))
bench("softmax_big_dim0", lambda: big.softmax(0))
bench("transpose_sum", lambda: big.transpose(0, 2).sum())
bench("matmul", lambda: a @ w64)
bench("cross_entropy", lambda: torch.nn.functional.cross_entropy(a, labels))
bench("attention_bag", lambda: no_grad(lambda: attention(bag)))
bench("var_dim1", lambda: a.var(dim=1))
bench("logsumexp_dim1", lambda: a.logsumexp(1))
bench("norm_dim1", lambda: a.norm(dim=1))
bench("gelu", lambda: torch.nn.functional.gelu(a))
bench("layer_norm", lambda: torch.nn.functional.layer_norm(a, [64]))
bench("masked_fill", lambda: a.masked_fill(b > 0.0, 0.0))
bench("gather_dim1", lambda: a.gather(1, idx))
bench("scatter_add_dim0", lambda: torch.zeros(1000, 64).scatter_add(0, groups, a))
bench("index_select_dim0", lambda: a.index_select(0, rows))
bench("sort_dim1", lambda: a.sort(1))
bench("topk_dim1", lambda: a.topk(5, 1))
bench("cat_dim0", lambda: torch.cat([a, b], dim=0))
bench("mul_sum_bwd", lambda: step((x * b).sum()))
bench("relu_bwd", lambda: step((x.relu() * b).sum()))
bench("exp_bwd", lambda: step((x.exp() * b).sum()))
bench("tanh_bwd", lambda: step((x.tanh() * b).sum()))
bench("sigmoid_bwd", lambda: step((x.sigmoid() * b).sum()))
bench("sum_dim0_bwd", lambda: step((x.sum(dim=0) * bias).sum()))
bench("softmax_dim1_bwd", lambda: step((x.softmax(1) * b).sum()))
bench("log_softmax_dim1_bwd", lambda: step((x.log_softmax(1) * b).sum()))
bench("matmul_bwd", lambda: step(((x @ w) * b).sum()))
bench("layer_norm_bwd", lambda: step((torch.nn.functional.layer_norm(x, [64]) * b).sum()))
bench("scatter_add_dim0_bwd", lambda: step((torch.zeros(1000, 64).scatter_add(0, groups, x) * pooled).sum()))
bench("gelu_bwd", lambda: step((torch.nn.functional.gelu(x) * b).sum()))
bench("cross_entropy_bwd", lambda: step(torch.nn.functional.cross_entropy(x, labels)))
bench("attention_bag_bwd", lambda: attention(bag).sum().backward())
