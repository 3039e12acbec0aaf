#!/usr/bin/env python3
"""The Python peer of `meshwork route-bench`: PyVRP on the same VRPLIB instances with the same
time limit, printing the same table (solver, instance, cost, best-known, gap %, seconds,
checker verdict) and the mean gap, after running meshwork's side, so both come from one run
on one machine.

- Instances: every `*.vrp` in DIR (default `routing/data/cvrp`, a copy of the shared X instances),
  best-known cost from the `.sol` file beside each.
- PyVRP: `pyvrp.read(path, round_func="round")` (VRPLIB's EUC_2D: each edge rounded to the
  nearest integer, as meshwork computes it), `pyvrp.solve(data, MaxRuntime(seconds),
  seed=seed)`.
- The checker recomputes each PyVRP solution independently: every customer exactly once,
  no route over capacity, cost from the coordinates with rounded edges equal to PyVRP's.
- meshwork's side: `--meshwork CMD` (a shell command printing its table), by default
  `target/release/meshwork route-bench DIR --seconds S --seed N` when that binary has the
  command, else
  the routing crate's example `target/release/examples/route_bench DIR S N`
  (`cargo build --release -p meshwork-routing --example route_bench`); `--skip-meshwork` to
  run PyVRP alone.

    python3 -m venv ~/.cache/meshwork/pyvrp-venv
    ~/.cache/meshwork/pyvrp-venv/bin/pip install pyvrp vrplib
    ~/.cache/meshwork/pyvrp-venv/bin/python scripts/route_peer.py [DIR] --seconds 10 --seed 1
"""

import argparse
import glob
import math
import os
import shlex
import subprocess
import sys
import time


def euc2d(a, b):
    """VRPLIB EUC_2D: the Euclidean distance rounded to the nearest integer (nint)."""
    return int(math.floor(math.hypot(a[0] - b[0], a[1] - b[1]) + 0.5))


def check(coords, demand, capacity, routes, claimed):
    """Returns "ok" or what is wrong (routes: lists of node indices, depot 0 implied)."""
    n = len(coords)
    seen = [False] * n
    total = 0
    for r, route in enumerate(routes):
        load = 0
        prev = 0
        for c in route:
            if c <= 0 or c >= n:
                return f"node {c} is not a customer"
            if seen[c]:
                return f"customer {c} visited more than once"
            seen[c] = True
            load += demand[c]
            total += euc2d(coords[prev], coords[c])
            prev = c
        if route:
            total += euc2d(coords[prev], coords[0])
        if load > capacity:
            return f"route {r} carries {load}, over capacity {capacity}"
    missing = [c for c in range(1, n) if not seen[c]]
    if missing:
        return f"customer {missing[0]} never visited"
    if total != claimed:
        return f"claimed cost {claimed}, recomputed {total}"
    return "ok"


def best_known(sol_path):
    try:
        with open(sol_path) as f:
            for line in f:
                if line.strip().lower().startswith("cost"):
                    return int(round(float(line.split()[1])))
    except OSError:
        return None
    return None


def row(solver, name, cost, best, secs, verdict):
    gap = f"{100.0 * (cost - best) / best:.2f}" if best else "-"
    return f"{solver:<8} {name:<14} {cost:>9} {best if best else '-':>9} {gap:>7} {secs:>7.2f}  {verdict}"


def run_meshwork(args, repo):
    if args.meshwork:
        cmd = args.meshwork
    else:
        binary = os.path.join(repo, "target", "release", "meshwork")
        example = os.path.join(repo, "target", "release", "examples", "route_bench")
        if os.path.exists(binary) and "route-bench" in subprocess.run(
            [binary, "--help"], capture_output=True, text=True
        ).stdout:
            cmd = f"{shlex.quote(binary)} route-bench {shlex.quote(args.dir)} --seconds {args.seconds} --seed {args.seed}"
        elif os.path.exists(example):
            cmd = f"{shlex.quote(example)} {shlex.quote(args.dir)} {args.seconds} {args.seed}"
        else:
            print("meshwork: no release binary found; build one or pass --meshwork CMD", file=sys.stderr)
            return
    print(f"# {cmd}", flush=True)
    subprocess.run(cmd, shell=True, check=True)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", nargs="?", default=os.path.join(repo, "routing", "data", "cvrp"))
    p.add_argument("--seconds", type=float, default=10.0, help="time limit per instance")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--meshwork", help="shell command that prints meshwork's table")
    p.add_argument("--skip-meshwork", action="store_true")
    args = p.parse_args()

    if not args.skip_meshwork:
        run_meshwork(args, repo)

    import vrplib  # noqa: E402
    from pyvrp import read, solve  # noqa: E402
    from pyvrp.stop import MaxRuntime  # noqa: E402

    print(f"{'solver':<8} {'instance':<14} {'cost':>9} {'best':>9} {'gap%':>7} {'secs':>7}  checker", flush=True)
    gaps = []
    for path in sorted(glob.glob(os.path.join(args.dir, "*.vrp"))):
        name = os.path.splitext(os.path.basename(path))[0]
        data = read(path, round_func="round")
        started = time.perf_counter()
        result = solve(data, stop=MaxRuntime(args.seconds), seed=args.seed, display=False)
        secs = time.perf_counter() - started
        cost = int(round(result.cost())) if result.is_feasible() else None
        inst = vrplib.read_instance(path)
        coords = [tuple(c) for c in inst["node_coord"]]
        demand = [int(d) for d in inst["demand"]]
        # PyVRP 0.14: a route iterates over scheduled activities (its depots and clients); a
        # client's `idx` counts the clients from 0, so its location (depot 0, customers
        # 1..n-1 in file order, as in meshwork) is idx + the number of depots.
        routes = [[a.idx + data.num_depots for a in r if a.is_client()] for r in result.best.routes()]
        verdict = check(coords, demand, int(inst["capacity"]), routes, cost) if cost is not None else "infeasible"
        best = best_known(os.path.splitext(path)[0] + ".sol")
        if cost is not None and best:
            gaps.append(100.0 * (cost - best) / best)
        print(row("pyvrp", name, cost if cost is not None else -1, best, secs, verdict), flush=True)
    if gaps:
        print(f"{'pyvrp':<8} mean gap {sum(gaps) / len(gaps):.2f}% over {len(gaps)} instances")


if __name__ == "__main__":
    main()
