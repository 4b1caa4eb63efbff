"""bench_peers.py: the same workloads as smil-bench, in PyTorch (and spconv for W3), side by side.

Run by scripts/bench with the peers' virtualenv. Prints `RESULT name=... value=... unit=...
peak_rss_mib=...` lines in smil-bench's format. One workload per process, so peak RSS is its own.
"""
import resource
import sys
import time

import torch
import torchvision


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_time(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def report(name, value, unit):
    print(f"RESULT name={name} value={value:.4g} unit={unit} peak_rss_mib={peak_mib():.0f}", flush=True)


def main():
    workload = sys.argv[1]
    iters = int(sys.argv[sys.argv.index("--iters") + 1]) if "--iters" in sys.argv else 5
    warmup = int(sys.argv[sys.argv.index("--warmup") + 1]) if "--warmup" in sys.argv else 1
    torch.manual_seed(0)
    if workload == "load":
        # The file smil-bench load wrote just before (torchvision's resnet50 state_dict layout).
        import os
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "smil-bench-resnet50.pth")
        t = median_time(lambda: torch.load(path, weights_only=True), iters, warmup)
        report("load_resnet50_pth", t * 1000, "ms")
    elif workload == "conv":
        conv_layers(iters, warmup)
    elif workload == "w2a":
        model = torchvision.models.resnet18(weights=None)
        model.fc = torch.nn.Identity()
        model.eval()
        x = torch.rand(10, 3, 512, 512)

        def step():
            with torch.no_grad():
                model(x)
        t = median_time(step, iters, warmup)
        report("W2a", 10 / t, "tiles/s")
    elif workload == "w2b":
        emb = torchvision.models.resnet18(weights=None)
        emb.fc = torch.nn.Identity()
        model = torch.nn.Sequential(emb, torch.nn.Linear(512, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.rand(10, 3, 224, 224)
        y = torch.arange(10) % 2

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        t = median_time(step, iters, warmup)
        report("W2b", t, "s/iter")
    elif workload == "w1":
        w1(iters, warmup)
    elif workload in ("w3a", "w3b"):
        w3(workload, iters, warmup)
    elif workload == "extract":
        extract(iters, warmup)
    elif workload == "bags":
        bags(iters, warmup)
    else:
        raise SystemExit(f"unknown workload {workload}")


def extract(iters, warmup):
    """W5: torchvision's resnet50 up to layer3, pooled (CLAM's resnet50_trunc), on the PNG tiles
    smil-bench extract wrote; PIL decoding and normalisation in a DataLoader with two workers."""
    import glob
    import os
    import numpy as np
    from PIL import Image
    folder = os.environ.get("TMPDIR", "/tmp") + "/smil-bench-tiles"
    files = sorted(glob.glob(folder + "/*.png"))
    r = torchvision.models.resnet50(weights=None)
    model = torch.nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3,
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    normalize = torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

    class Tiles(torch.utils.data.Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            x = torch.from_numpy(np.asarray(Image.open(files[i]).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
            return normalize(x)

    # Decoding in two worker processes or in the main one, whichever is faster here (on two cores
    # the workers compete with the model's threads): the peer's best.
    best = 0
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(Tiles(), batch_size=64, num_workers=workers)

        def run():
            with torch.no_grad():
                for batch in loader:
                    model(batch)
        best = max(best, len(files) / median_time(run, iters, warmup))
    report("W5_extract_resnet50_trunc_256", best, "tiles/s")


def bags(iters, warmup):
    """W6: one epoch of SparseConvMIL on 200 bags of ~4,000 x 1024-D features at the coordinates
    smil-bench bags wrote: Linear(1024, 128), spconv SubM 3x3 128 -> 128 twice with ReLUs, mean
    pool, MLP 128 -> 128 -> 2, cross-entropy, Adam, one bag per step."""
    try:
        import spconv.pytorch as spconv
        import spconv.pytorch.ops as ops
    except ImportError:
        return
    import os
    import h5py
    ops.get_current_stream = lambda: 0
    with h5py.File(os.environ.get("TMPDIR", "/tmp") + "/smil-bench-bags.h5", "r") as f:
        coords = torch.from_numpy(f["coords"][:])
        lengths = f["lengths"][:].tolist()
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    pool = [torch.randn(max(lengths), 1024) for _ in range(8)]
    proj = torch.nn.Linear(1024, 128)
    sparse = spconv.SparseSequential(spconv.SubMConv2d(128, 128, 3, indice_key="a"), torch.nn.ReLU(),
                                     spconv.SubMConv2d(128, 128, 3, indice_key="a"), torch.nn.ReLU())
    head = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 2))
    opt = torch.optim.Adam(list(proj.parameters()) + list(sparse.parameters()) + list(head.parameters()), lr=1e-4)

    def epoch():
        for b, n in enumerate(lengths):
            c = coords[starts[b]:starts[b + 1]]
            c = c - c.min(0).values
            idx = torch.cat([torch.zeros(n, 1, dtype=torch.int32), c.int()], 1)
            shape = [int(c[:, 0].max()) + 1, int(c[:, 1].max()) + 1]
            opt.zero_grad()
            y = sparse(spconv.SparseConvTensor(proj(pool[b % 8][:n]), idx, shape, 1))
            loss = torch.nn.functional.cross_entropy(head(y.features.mean(0, keepdim=True)), torch.tensor([b % 2]))
            loss.backward()
            opt.step()
    report("W6_bags_epoch", median_time(epoch, iters, warmup), "s")


def w1(iters, warmup):
    """SparseConvMIL's training step in PyTorch, with spconv for the sparse CNN (the reference uses
    SparseConvNet, which has no PyPI package; peers/README.md measures both within 3%)."""
    try:
        import spconv.pytorch as spconv
        import spconv.pytorch.ops as ops
    except ImportError:
        return
    ops.get_current_stream = lambda: 0
    emb = torchvision.models.resnet18(weights=None)
    emb.fc = torch.nn.Identity()
    sparse = spconv.SparseSequential(spconv.SubMConv2d(512, 32, 3, indice_key="a"), torch.nn.ReLU(),
                                     spconv.SubMConv2d(32, 32, 3, indice_key="a"), torch.nn.ReLU())
    head = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    params = list(emb.parameters()) + list(sparse.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=2e-3, weight_decay=1e-6)
    tiles = torch.rand(2, 5, 3, 512, 512)
    coords = torch.tensor([((i * 37) % 200) for i in range(20)], dtype=torch.float32).view(2, 5, 2)
    labels = torch.tensor([0, 1])

    def step():
        opt.zero_grad()
        f = emb(tiles.view(10, 3, 512, 512))
        c = (coords / 10).long()
        c = c - c.min(dim=1, keepdim=True).values
        idx = torch.cat([torch.arange(2).repeat_interleave(5).view(10, 1), c.view(10, 2)], 1).int()
        uniq, inv = torch.unique(idx, dim=0, return_inverse=True)
        feats = torch.zeros(len(uniq), 512).index_add(0, inv, f) / torch.bincount(inv).view(-1, 1)
        shape = [int(uniq[:, 1].max()) + 1, int(uniq[:, 2].max()) + 1]
        y = sparse(spconv.SparseConvTensor(feats, uniq, shape, 2))
        pooled = torch.stack([y.features[y.indices[:, 0] == b].mean(0) for b in range(2)])
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        loss.backward()
        opt.step()
    report("W1", median_time(step, iters, warmup), "s/iter")


def conv_layers(iters, warmup):
    """smil-bench conv's layers in torch.nn.Conv2d: ResNet-18 shapes at a 512 x 512 tile, batch 2."""
    layers = [(3, 64, 7, 2, 512), (64, 64, 3, 1, 128), (128, 128, 3, 1, 64), (256, 256, 3, 1, 32),
              (512, 512, 3, 1, 16), (64, 128, 1, 2, 128)]
    for cin, cout, k, s, size in layers:
        conv = torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False)
        x = torch.randn(2, cin, size, size)
        out = (size + 2 * (k // 2) - k) // s + 1
        flops = 2 * 2 * cout * out * out * cin * k * k

        def fwd():
            with torch.no_grad():
                conv(x)
        xg = x.clone().requires_grad_(True)

        def both():
            y = conv(xg)
            y.backward(torch.ones_like(y))
        name = f"conv_{cin}x{cout}_k{k}s{s}_{size}"
        report(name + "_fwd", flops / median_time(fwd, iters, warmup) / 1e9, "GFLOP/s")
        report(name + "_fwdbwd", 3 * flops / median_time(both, iters, warmup) / 1e9, "GFLOP/s")


def w3_sites(workload):
    """The sites smil-bench uses: 20,000 distinct random sites of 1000 x 1000, or a disk of radius 100."""
    if workload == "w3b":
        return [(r, c) for r in range(201) for c in range(201) if (r - 100) ** 2 + (c - 100) ** 2 <= 100 ** 2], [201, 201]
    g = torch.Generator().manual_seed(0)
    flat = torch.randperm(1000 * 1000, generator=g)[:20000]
    return [(int(i) // 1000, int(i) % 1000) for i in flat], [1000, 1000]


def w3(workload, iters, warmup):
    """spconv 2.x SubMConv2d(64, 64, 3, bias=False) on CPU, rulebook rebuilt and reused."""
    try:
        import spconv.pytorch as spconv
        import spconv.pytorch.ops as ops
    except ImportError:
        return
    ops.get_current_stream = lambda: 0   # spconv 2.3.8's CPU backward asks for a CUDA stream
    sites, shape = w3_sites(workload)
    n = len(sites)
    indices = torch.tensor([(0, r, c) for r, c in sites], dtype=torch.int32)
    features = torch.randn(n, 64)
    conv = spconv.SubMConv2d(64, 64, 3, bias=False, indice_key="subm")

    def fresh():
        with torch.no_grad():
            conv(spconv.SparseConvTensor(features, indices, shape, 1))

    fg = features.clone().requires_grad_(True)

    def fresh_both():
        y = conv(spconv.SparseConvTensor(fg, indices, shape, 1))
        y.features.backward(torch.ones_like(y.features))

    x0 = spconv.SparseConvTensor(features, indices, shape, 1)
    conv(x0)

    def cached():
        with torch.no_grad():
            conv(spconv.SparseConvTensor(features, indices, shape, 1, indice_dict=x0.indice_dict))

    def cached_both():
        y = conv(spconv.SparseConvTensor(fg, indices, shape, 1, indice_dict=x0.indice_dict))
        y.features.backward(torch.ones_like(y.features))

    name = workload.upper()
    report(name + "_fwd", median_time(fresh, iters, warmup) * 1000, "ms")
    report(name + "_fwdbwd", median_time(fresh_both, iters, warmup) * 1000, "ms")
    report(name + "_fwd_cached", median_time(cached, iters, warmup) * 1000, "ms")
    report(name + "_fwdbwd_cached", median_time(cached_both, iters, warmup) * 1000, "ms")


if __name__ == "__main__":
    main()
