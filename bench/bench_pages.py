"""First render of every page with a 5,000-image dataset and a trained run.

Usage::

    python bench/bench_pages.py [--images 5000] [--json]

Builds a fresh ``CNNLAB_HOME`` with a generated ``shapes`` dataset of about N images and
one short run, then renders each page once in a new session (Streamlit's AppTest, in
one process whose imports are already warm, as on a running server) and reports the
seconds each first render took, then a rerun. Target: every first render under 2 s,
i.e. no training-scale work when a page is opened or rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 2.0
PAGES = [
    "1_data.py",
    "2_architecture.py",
    "3_train.py",
    "4_evaluate.py",
    "5_predict.py",
    "6_experiments.py",
]


def prepare(home: Path, images: int) -> str:
    env = {**os.environ, "CNNLAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    per_class = images // 4
    commands = [
        ["ingest", "sample:shapes", "--name", "shapes", "--count", str(per_class),
         "--image-size", "64", "--no-progress"],
        ["train", "--dataset", "shapes", "--arch", "simple", "--image-size", "32",
         "--epochs", "1", "--json"],
    ]  # fmt: skip
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "cnnlab", *command],
            cwd=REPO, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"`cnnlab {' '.join(command)}` failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["run_id"]


def render_times(run_id: str) -> list[dict]:
    import tensorflow  # noqa: F401  (a running server has imported it already)
    from streamlit.testing.v1 import AppTest

    rows = []
    for page in PAGES:
        path = REPO / "pages" / page
        if not path.exists():
            continue
        at = AppTest.from_file(str(path), default_timeout=300)
        at.session_state["dataset"] = "shapes"
        at.session_state["run"] = run_id
        start = time.perf_counter()
        at.run()
        first = time.perf_counter() - start
        start = time.perf_counter()
        at.run()
        rerun = time.perf_counter() - start
        rows.append(
            {
                "page": page,
                "first_render_s": round(first, 3),
                "rerun_s": round(rerun, 3),
                "exception": bool(at.exception),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cnnlab-bench-pages-"))
    os.environ["CNNLAB_HOME"] = str(home)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    run_id = prepare(home, args.images)
    rows = render_times(run_id)
    slowest = max(row["first_render_s"] for row in rows)
    result = {"images": args.images, "pages": rows, "slowest_first_render_s": slowest,
              "target_s": TARGET_S, "meets_target": slowest < TARGET_S}  # fmt: skip
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'page':<22}{'first render (s)':>18}{'rerun (s)':>12}")
    for row in rows:
        flag = "  EXCEPTION" if row["exception"] else ""
        print(f"{row['page']:<22}{row['first_render_s']:>18.2f}{row['rerun_s']:>12.2f}{flag}")
    verdict = "meets" if result["meets_target"] else "misses"
    print(f"slowest first render {slowest:.2f} s: {verdict} the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
