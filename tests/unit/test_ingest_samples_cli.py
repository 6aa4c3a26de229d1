"""Built-in samples and the ``ingest`` / ``datasets`` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.dataset import Dataset, list_datasets
from cnnlab.data.ingest import ingest
from cnnlab.data.samples import ShapesSpec, shape_counts
from cnnlab.errors import CnnlabError

REPO = Path(__file__).resolve().parents[2]
REPORT_KEYS = {"dataset", "images", "classes", "rejected", "ignored", "health"}


def test_digits_sample(workspace):
    report = ingest("sample:digits", "digits")
    assert report.images == 1797
    assert list(report.classes) == [str(d) for d in range(10)]
    dataset = Dataset("digits")
    assert dataset.channels == 1 and dataset.meta["source"] == "sample:digits"
    assert dataset.meta["orientation_matters"] is True
    first = dataset.records[0]
    assert (first.width, first.height) == (32, 32)
    with Image.open(dataset.path / first.file) as image:
        assert image.mode == "L" and image.size == (32, 32)
    assert report.health["tiny"] == []
    assert set(report.health["splits"]) == {"train", "val", "test"}


def test_shapes_sample_is_imbalanced_and_deterministic(workspace):
    options = {"count": 24, "image_size": 32, "imbalance": 2.0}
    report = ingest("sample:shapes", "shapes", options=options, seed=1)
    assert report.classes == {"circle": 24, "square": 12, "star": 3, "triangle": 6}
    assert report.health["imbalance_ratio"] == 8.0
    dataset = Dataset("shapes")
    assert dataset.channels == 3
    # Recorded, not defaulted: a colour dataset would otherwise count as photos.
    assert dataset.meta["orientation_matters"] is True
    assert dataset.meta["source"].startswith("sample:shapes(count=24, image_size=32")
    with Image.open(dataset.path / dataset.records[0].file) as image:
        assert image.mode == "RGB" and image.size == (32, 32)
    again = ingest("sample:shapes", "shapes2", options=options, seed=1)
    assert again.health == report.health
    assert [r.sha for r in Dataset("shapes2").records] == [r.sha for r in dataset.records]
    other = ingest("sample:shapes", "shapes3", options={**options, "seed": 9}, seed=1)
    assert {r.sha for r in Dataset("shapes3").records} != {r.sha for r in dataset.records}
    assert other.images == report.images


def test_shape_counts_never_below_three():
    counts = shape_counts(ShapesSpec(count=10, imbalance=10.0))
    assert counts == {"circle": 10, "square": 3, "triangle": 3, "star": 3}


def test_sample_errors(workspace):
    with pytest.raises(CnnlabError, match="Unknown sample 'sample:cats'. Valid samples"):
        ingest("sample:cats", "x")
    with pytest.raises(CnnlabError, match=r"`imbalance` must be in \[1, 10\]"):
        ingest("sample:shapes", "x", options={"imbalance": 50})
    with pytest.raises(CnnlabError, match="Unknown sample:digits option field"):
        ingest("sample:digits", "x", options={"count": 3})
    assert list_datasets() == []


# -- CLI --------------------------------------------------------------------------------


def test_cli_ingest_json(workspace, image_folders, capsys):
    code = main(["ingest", str(image_folders), "--name", "pets", "--json", "--seed", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    report = json.loads(out)
    assert set(report) == REPORT_KEYS
    assert report["dataset"] == "pets" and report["images"] == 24
    assert report["classes"] == {"cat": 8, "dog": 8, "fox": 8}
    assert Dataset("pets").meta["seed"] == 2
    assert Dataset("pets").meta["orientation_matters"] is False


def test_cli_ingest_summary_with_rejections(workspace, image_folders, capsys):
    (image_folders / "cat" / "broken.png").write_bytes(b"not really")
    assert main(["ingest", str(image_folders), "--name", "pets", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Dataset 'pets': 24 image(s) accepted, 1 rejected, 0 ignored." in out
    assert "cat/broken.png: not an image: the file holds text" in out


def test_cli_shapes_options(workspace, capsys):
    args = [
        "ingest",
        "sample:shapes",
        "--name",
        "s",
        "--json",
        "--count",
        "9",
        "--image-size",
        "24",
        "--imbalance",
        "3",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == {"circle": 9, "square": 3, "star": 3, "triangle": 3}


def test_cli_unusable_exits_2_with_one_line(workspace, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    assert main(["ingest", str(empty), "--name", "e", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no usable images")
    assert captured.err.count("\n") == 1
    assert main(["ingest", str(tmp_path / "nope.zip"), "--name", "e"]) == 2


def test_cli_existing_name_exits_2(workspace, image_folders, capsys):
    assert main(["ingest", str(image_folders), "--name", "pets", "--json"]) == 0
    capsys.readouterr()
    assert main(["ingest", str(image_folders), "--name", "pets", "--json"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["ingest", str(image_folders), "--name", "pets", "--json", "--replace"]) == 0


def test_cli_datasets(workspace, image_folders, capsys):
    assert main(["datasets", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"datasets": []}
    main(["ingest", str(image_folders), "--name", "pets", "--json"])
    capsys.readouterr()
    assert main(["datasets", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["datasets"]
    assert len(listing) == 1
    row = listing[0]
    assert set(row) == {"name", "images", "classes", "channels", "created", "orientation_matters"}
    assert (row["name"], row["images"], row["classes"], row["channels"]) == ("pets", 24, 3, 3)
    assert row["orientation_matters"] is False
    assert main(["datasets"]) == 0
    assert "pets" in capsys.readouterr().out


def test_cli_in_a_real_process(workspace, image_folders):
    env = {**os.environ, "CNNLAB_HOME": str(workspace)}
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "ingest", str(image_folders), "--name", "sub", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == REPORT_KEYS and report["images"] == 24
    split_counts = Counter(r.split for r in Dataset("sub").records)
    assert split_counts == {"train": 18, "val": 3, "test": 3}
