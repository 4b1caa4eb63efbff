"""bench_peers.py: the same workloads as smil-bench, in PyTorch, for side-by-side ratios.

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
    if workload == "w2a":
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
    else:
        raise SystemExit(f"unknown workload {workload}")


if __name__ == "__main__":
    main()
