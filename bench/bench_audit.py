"""Label-error audit: does `cnnlab audit` find labels changed on purpose?

    python bench/bench_audit.py                     # digits (5%) then flowers (10%)
    python bench/bench_audit.py --only digits --budget 5

Each part ingests its data into a throw-away workspace, changes the label of a seeded
random share of the *training* images to another class (through
``cnnlab.data.ingest.relabel_images``, the same path a user's relabel takes), then runs
``python -m cnnlab audit NAME --json`` as a user does and reads its ranked label issues.
N = the number of labels changed; precision at N = changed images among the top N
issues / the issues there (N, or fewer when the list is shorter); recall at N = the same
count / N; and the recall of the whole list. CPU time is the audit process's user+system seconds
(``resource.getrusage(RUSAGE_CHILDREN)``), wall time as the user waits.

Target (issue 13 §7): the top N holds at least 70% of the changed images.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

import numpy as np
from common import REPO, bench_workspace, run

PARTS = {
    # name: (source, share of training labels changed)
    "digits": ("sample:digits", 0.05),
    "flowers": (str(REPO.parent / "shared" / "data" / "flowers-small"), 0.10),
}
TARGET = 0.70


def flip_labels(home: Path, name: str, share: float, seed: int) -> set[str]:
    """Give ``share`` of the training images another class (seeded); return the
    stored files the changed images have afterwards."""
    os.environ["CNNLAB_HOME"] = str(home)
    sys.path.insert(0, str(REPO))
    from cnnlab.data.dataset import load_dataset
    from cnnlab.data.ingest import relabel_images

    dataset = load_dataset(name)
    train = dataset.split("train")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(train), size=round(share * len(train)), replace=False)
    changes = {}
    for i in chosen:
        record = train[int(i)]
        others = [label for label in dataset.class_names if label != record.label]
        changes[record.file] = others[int(rng.integers(len(others)))]
    relabel_images(name, changes)
    after = load_dataset(name)
    moved = {(r.sha, r.label) for r in after.records}
    wanted = {(train[int(i)].sha, changes[train[int(i)].file]) for i in chosen}
    assert wanted <= moved
    return {r.file for r in after.records if r.split == "train" and (r.sha, r.label) in wanted}


def part(args: argparse.Namespace, name: str, home: Path, env: dict) -> dict:
    source, share = PARTS[name]
    run([sys.executable, "-m", "cnnlab", "ingest", source, "--name", name, "--json",
         "--no-progress"], env)  # fmt: skip
    changed = flip_labels(home, name, share, args.seed)
    command = [sys.executable, "-m", "cnnlab", "audit", name, "--folds", str(args.folds),
               "--seed", str(args.seed), "--json"]  # fmt: skip
    if args.budget:
        command += ["--budget", str(args.budget)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result, wall = run(command, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    listed = [issue["file"] for issue in result["label_issues"]]
    top = listed[: len(changed)]
    found = len(set(top) & changed)
    summary = {
        "part": name,
        "images_changed": len(changed),
        "issues_listed": len(listed),
        "precision_at_n": round(found / max(len(top), 1), 3),
        "recall_at_n": round(found / len(changed), 3),
        "recall_of_list": round(len(set(listed) & changed) / len(changed), 3),
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "folds": args.folds,
        "budget_minutes": args.budget,
        "met": found / len(changed) >= TARGET,
    }
    print(f"{name}: {len(changed)} labels changed ({share:.0%} of train); top {len(changed)} "
          f"holds {found} (precision {summary['precision_at_n']:.1%}, recall "
          f"{summary['recall_at_n']:.1%} at N); "
          f"whole list ({len(listed)}) recalls {summary['recall_of_list']:.1%}; "
          f"CPU {cpu:.0f} s, wall {wall:.0f} s -> target "
          f"{'met' if summary['met'] else 'not met'}", flush=True)  # fmt: skip
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=tuple(PARTS), action="append", help="run only these")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=None, help="audit budget, minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspaces")
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    args = parser.parse_args()
    results = []
    for name in args.only or tuple(PARTS):
        with bench_workspace(args.keep) as (home, env):
            results.append(part(args, name, home, env))
    if args.json:
        print(json.dumps({"audit": results}))


if __name__ == "__main__":
    main()
