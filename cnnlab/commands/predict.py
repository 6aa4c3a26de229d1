"""``predict`` and ``export``: a trained run's model on image files, and for other tools."""

from __future__ import annotations

import argparse
import sys
import time

from cnnlab.cli import add_json_flag, print_json


def register(subparsers) -> None:
    predict_parser = subparsers.add_parser(
        "predict",
        help="predict image files with a run's model",
        description=(
            "Predict image files (any format, size and mode; folders are read recursively) "
            "with a run's model. A file that cannot be read gets its own error; the others "
            "are still predicted."
        ),
    )
    predict_parser.add_argument("run", metavar="RUN", help="the run id (see `runs`)")
    predict_parser.add_argument(
        "paths", metavar="FILE_OR_DIR", nargs="+", help="image files or folders of images"
    )
    predict_parser.add_argument(
        "--top-k", type=int, default=3, metavar="K", help="labels per image (default 3)"
    )
    predict_parser.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which model (best)"
    )
    predict_parser.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="images per forward pass"
    )
    add_json_flag(predict_parser)
    predict_parser.set_defaults(handler=run_predict)

    from cnnlab.export import FORMATS

    export_parser = subparsers.add_parser(
        "export",
        help="export a run's model as .keras, SavedModel or TFLite",
        description=(
            "Write the run's model under <run>/export/. The exported model takes raw "
            "0-255 pixels of any size (resizing and rescaling are inside it). --check "
            "runs it over the run's test images and compares with the in-app model."
        ),
    )
    export_parser.add_argument("run", metavar="RUN", help="the run id (see `runs`)")
    export_parser.add_argument("--format", choices=FORMATS, required=True, dest="fmt")
    export_parser.add_argument(
        "--check", action="store_true", help="run the export parity check on the test images"
    )
    export_parser.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which model (best)"
    )
    export_parser.add_argument(
        "--force", action="store_true", help="export again even if an up-to-date export exists"
    )
    add_json_flag(export_parser)
    export_parser.set_defaults(handler=run_export)


def run_predict(args: argparse.Namespace) -> int:
    from cnnlab import predict

    top_k = predict.check_top_k(args.top_k)
    predictor = predict.Predictor(args.run, args.checkpoint, batch_size=args.batch_size).load()
    start = time.perf_counter()
    predictions = predictor.predict_files(args.paths, top_k=top_k)
    seconds = time.perf_counter() - start
    speed = predict.images_per_second(predictions, seconds)
    if args.json:
        print_json(
            {
                "run_id": predictor.run_.run_id,
                "predictions": [prediction.to_dict() for prediction in predictions],
                "images_per_s": round(speed, 2),
            }
        )
    else:
        for prediction in predictions:
            if prediction.ok:
                top = ", ".join(f"{label} {p:.1%}" for label, p in prediction.top)
                print(f"{prediction.file}: {top} ({prediction.latency_ms:.1f} ms)")
            else:
                print(f"{prediction.file}: error: {prediction.error}")
        done = sum(prediction.ok for prediction in predictions)
        print(
            f"{done}/{len(predictions)} image(s) predicted, {speed:.1f} images/s", file=sys.stderr
        )
    # Bad files are reported per file; the run itself succeeded when anything was read.
    return 0 if any(prediction.ok for prediction in predictions) else 2


def run_export(args: argparse.Namespace) -> int:
    from cnnlab import export

    result = export.export_model(args.run, args.fmt, args.checkpoint, force=args.force)
    report = export.check_export(args.run, args.fmt, args.checkpoint) if args.check else None
    if args.json:
        out = result.to_dict()
        if report is not None:
            out["parity"] = report.to_dict()
        print_json(out)
    else:
        print(f"{result.path} ({result.size_bytes / 2**20:.1f} MB)")
        print(f"{result.labels_path} (class names, one per line in output order)")
        if report is not None:
            print(report.summary())
            if report.skipped:
                print(f"{report.skipped} test image(s) could not be read and were skipped.")
    return 0 if report is None or report.passed else 1
