"""XGBoost's one-row call, in process, on one OpenMP thread: ``Booster.inplace_predict`` against
the same C function called directly (``modelshelf.frameworks.xgboost._dense_call``), hot (back
to back) and cold (after 16 MB of other memory were read, as between requests), in
interleaved rounds; CPU time of the calling thread, median per call.

    .venv/bin/python bench/profiles/xgboost_call.py BOOSTER_FILE [--rows 1] [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

EVICTION_BYTES = 16 * 1024 * 1024


def per_call_cpu(call: Callable[[], object], calls: int, other: np.ndarray | None) -> float:
    """Median thread CPU µs of ``call``; ``other`` read before each call when given."""
    found = []
    for _ in range(calls):
        if other is not None:
            other.sum()
        started = time.thread_time()
        call()
        found.append(time.thread_time() - started)
    return statistics.median(found) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("booster_file")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    import xgboost as xgb
    from threadpoolctl import threadpool_limits

    from modelshelf.frameworks.xgboost._dense_call import dense_call

    booster = xgb.Booster(model_file=args.booster_file)
    booster.set_param({"nthread": 0})  # threads follow OpenMP's, as served
    X = np.random.default_rng(11).normal(size=(args.rows, booster.num_features()))
    other = np.ones(EVICTION_BYTES // 8)
    with threadpool_limits(1, user_api="openmp"):
        direct = dense_call(booster, "value", np.nan, booster.num_features())
        if direct is None:
            print("the direct call was refused at load (see the log)")
            return 1
        calls = {
            "inplace_predict": lambda: booster.inplace_predict(X, validate_features=False),
            "direct C call": lambda: direct(X),
        }
        found: dict[str, list[float]] = {f"{n}, {s}": [] for n in calls for s in ("hot", "cold")}
        for _ in range(args.rounds):
            for name, call in calls.items():
                found[f"{name}, hot"].append(per_call_cpu(call, args.calls, None))
                found[f"{name}, cold"].append(per_call_cpu(call, args.calls, other))
    medians = {name: statistics.median(values) for name, values in found.items()}
    print(f"{args.booster_file}, {args.rows} row(s): CPU µs per call, median of {args.rounds}")
    for name, value in medians.items():
        print(f"  {name}: {value:.1f}")
    for state in ("hot", "cold"):
        ratio = medians[f"inplace_predict, {state}"] / medians[f"direct C call, {state}"]
        print(f"  inplace_predict / direct, {state}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
