#!/usr/bin/env python3
"""The Python peer of `meshwork recommend-eval`: implicit's models on the very same split.

`meshwork recommend-eval ... --write-split DIR` writes DIR/train.csv and DIR/test.csv
(`user,item,value,timestamp_ms`; train's value is the weight our model trained with). This
script reads them, fits implicit's CosineRecommender (K=20, our default neighbours) and
AlternatingLeastSquares (factors=64, iterations=15, regularization=0.05, seeded) and a
popularity baseline on train, and prints the same metrics with the same definitions as the
Rust side (meshwork-recommendation `eval::metrics`, which follows
implicit.evaluation.ranking_metrics_at_k):

- every user with at least one test item is evaluated; train items are never recommended
  (filter_already_liked_items=True);
- precision@k = sum of hits / sum of min(k, |test_u|) over users (implicit's denominator);
- MAP@k = mean over users of (sum over hit ranks i of hits_so_far / (i + 1)) / min(k, |test_u|);
- nDCG@k = mean of DCG / IDCG with binary gains 1/log2(i + 2), IDCG over min(k, |test_u|);
- recall@k = mean over users of hits / |test_u| (not in implicit);
- coverage = distinct items recommended / distinct items in train.

For the implicit models it also runs implicit.evaluation.ranking_metrics_at_k and checks
that its precision, MAP and nDCG equal ours (printed as "implicit check").

    python3 -m pip install implicit
    python3 scripts/recommend_peer.py DIR --k 10 --seed 42
"""

import argparse
import csv
import math
import os
import sys
import time
import warnings

# One BLAS thread, as implicit recommends (it warns otherwise); set before numpy loads BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy.sparse import csr_matrix  # noqa: E402


def read_split(path):
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["user", "item", "value", "timestamp_ms"]:
            raise SystemExit(f"{path}: the header must be user,item,value,timestamp_ms")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 4:
                raise SystemExit(f"{path}: line {line}: expected 4 fields")
            rows.append((row[0].strip(), row[1].strip(), float(row[2])))
    return rows


def metrics_at_k(recommend, users, test_items, train_item_count, k):
    """Our metric definitions; `recommend(user_index) -> list of item indices`."""
    relevant = 0.0
    pr_div = 0.0
    ap_sum = 0.0
    ndcg_sum = 0.0
    recall_sum = 0.0
    evaluated = 0
    recommended = set()
    for u in users:
        likes = test_items[u]
        if not likes:
            continue
        cut = min(k, len(likes))
        idcg = sum(1.0 / math.log2(j + 2) for j in range(cut))
        hits = 0
        ap = 0.0
        dcg = 0.0
        seen = set()
        for i, item in enumerate(recommend(u)[:k]):
            recommended.add(item)
            if item in seen:
                continue
            seen.add(item)
            if item in likes:
                hits += 1
                ap += hits / (i + 1)
                dcg += 1.0 / math.log2(i + 2)
        relevant += hits
        pr_div += cut
        ap_sum += ap / cut
        ndcg_sum += dcg / idcg
        recall_sum += hits / len(likes)
        evaluated += 1
    n = max(evaluated, 1)
    return {
        "precision": relevant / pr_div if pr_div else 0.0,
        "recall": recall_sum / n,
        "ndcg": ndcg_sum / n,
        "map": ap_sum / n,
        "coverage": len(recommended) / train_item_count if train_item_count else 0.0,
        "users": evaluated,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="implicit's models on a recommend-eval split")
    parser.add_argument("dir", help="the directory given to recommend-eval --write-split")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--neighbours", type=int, default=20, help="CosineRecommender K")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="implicit threads (0 = all cores)")
    args = parser.parse_args()

    import implicit
    from implicit.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k
    from implicit.nearest_neighbours import CosineRecommender

    # CosineRecommender.fit normalises into a COO matrix and then warns about its own input.
    warnings.filterwarnings("ignore", message="Method expects CSR input")

    train = read_split(os.path.join(args.dir, "train.csv"))
    test = read_split(os.path.join(args.dir, "test.csv"))

    user_ids = sorted({u for u, _, _ in train} | {u for u, _, _ in test})
    item_ids = sorted({i for _, i, _ in train} | {i for _, i, _ in test})
    user_index = {u: n for n, u in enumerate(user_ids)}
    item_index = {i: n for n, i in enumerate(item_ids)}
    shape = (len(user_ids), len(item_ids))

    def matrix(rows):
        return csr_matrix(
            (
                np.array([v for _, _, v in rows], dtype=np.float32),
                (
                    np.array([user_index[u] for u, _, _ in rows]),
                    np.array([item_index[i] for _, i, _ in rows]),
                ),
            ),
            shape=shape,
        )

    train_m = matrix(train)
    test_m = matrix(test)
    test_items = [set() for _ in user_ids]
    for u, i, _ in test:
        test_items[user_index[u]].add(item_index[i])
    train_items = [set() for _ in user_ids]
    for u, i, _ in train:
        train_items[user_index[u]].add(item_index[i])
    train_item_count = len({i for _, i, _ in train})
    test_users = np.array([u for u in range(len(user_ids)) if test_items[u]])

    print(
        f"data: {args.dir} ({len(train) + len(test)} interactions, {len(user_ids)} users, "
        f"{len(item_ids)} items); implicit {implicit.__version__}"
    )
    print(
        f"split: as written: {len(train)} train, {len(test)} test; k = {args.k}; "
        f"{len(test_users)} test users"
    )

    results = []

    def run_implicit(name, model):
        started = time.perf_counter()
        model.fit(train_m, show_progress=False)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        ids, _ = model.recommend(
            test_users, train_m[test_users], N=args.k, filter_already_liked_items=True
        )
        recs = {int(u): [int(i) for i in row if i >= 0] for u, row in zip(test_users, ids)}
        elapsed = time.perf_counter() - started
        m = metrics_at_k(lambda u: recs[u], test_users, test_items, train_item_count, args.k)
        check = ranking_metrics_at_k(model, train_m, test_m, K=args.k, show_progress=False)
        for key in ("precision", "map", "ndcg"):
            if abs(check[key] - m[key]) > 1e-6:
                print(
                    f"implicit check: {name} {key}: ours {m[key]:.6f}, "
                    f"implicit's {check[key]:.6f}",
                    file=sys.stderr,
                )
        results.append((name, m, fit, elapsed))

    run_implicit(f"implicit cosine K={args.neighbours}", CosineRecommender(K=args.neighbours, num_threads=args.threads))
    run_implicit(
        f"implicit ALS f={args.factors}",
        AlternatingLeastSquares(
            factors=args.factors,
            iterations=args.iterations,
            regularization=args.regularization,
            random_state=args.seed,
            num_threads=args.threads,
        ),
    )

    # Popularity: train interactions per item, ties by item id (as the Rust baseline).
    started = time.perf_counter()
    counts = {}
    for _, i, _ in train:
        counts[i] = counts.get(i, 0) + 1
    ranked = [item_index[i] for i, _ in sorted(counts.items(), key=lambda c: (-c[1], c[0]))]
    fit = time.perf_counter() - started

    def popular(u):
        out = []
        for i in ranked:
            if i not in train_items[u]:
                out.append(i)
                if len(out) == args.k:
                    break
        return out

    started = time.perf_counter()
    m = metrics_at_k(popular, test_users, test_items, train_item_count, args.k)
    results.append(("popularity", m, fit, time.perf_counter() - started))

    k = args.k
    print(
        f"{'model':<22} {'precision@' + str(k):>12} {'recall@' + str(k):>10} "
        f"{'ndcg@' + str(k):>10} {'map@' + str(k):>10} {'coverage':>9} {'fit':>10} {'recommend':>10}"
    )
    for name, m, fit, rec in results:
        print(
            f"{name:<22} {m['precision']:>12.4f} {m['recall']:>10.4f} {m['ndcg']:>10.4f} "
            f"{m['map']:>10.4f} {m['coverage']:>9.4f} {fit:>9.2f}s {rec:>9.2f}s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
