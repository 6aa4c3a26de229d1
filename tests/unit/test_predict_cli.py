"""``python -m cnnlab predict`` and ``export`` on a run folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.cli import main
from tests.conftest import REPO, make_dataset_on_disk
from tests.unit.test_predict import png_bytes, random_pixels, save_model_run


@pytest.fixture
def run_and_files(workspace, tmp_path):
    run_id = save_model_run()
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(random_pixels(30, 30, seed=1)))
    (folder / "more" / "b.jpg").write_bytes(png_bytes(random_pixels(50, 20, seed=2), fmt="JPEG"))
    (folder / "readme.txt").write_bytes(b"not an image")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    loose = tmp_path / "c.png"
    loose.write_bytes(png_bytes(random_pixels(24, 24, 1, seed=3), "L"))
    return run_id, folder, loose


def test_predict_json(run_and_files, capsys):
    run_id, folder, loose = run_and_files
    code = main(["predict", run_id, str(folder), str(loose), "--top-k", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["run_id"] == run_id and out["images_per_s"] > 0
    files = [item["file"] for item in out["predictions"]]
    assert files == [str(folder / "a.png"), str(folder / "more/b.jpg"),
                     str(folder / "readme.txt"), str(loose)]  # fmt: skip
    for item in out["predictions"]:
        if item["file"].endswith("readme.txt"):
            assert item == {"file": item["file"], "error": "not an image: the file holds text"}
            continue
        assert set(item) == {"file", "top", "latency_ms"}
        assert len(item["top"]) == 2 and item["latency_ms"] > 0
        assert {"label", "probability"} == set(item["top"][0])
        assert item["top"][0]["label"] in ("cat", "dog", "fox")
        assert item["top"][0]["probability"] >= item["top"][1]["probability"]


def test_predict_text_and_exit_codes(run_and_files, capsys, tmp_path):
    run_id, folder, _ = run_and_files
    assert main(["predict", run_id, str(folder / "a.png")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{folder / 'a.png'}: ") and "%" in captured.out
    assert "1/1 image(s) predicted" in captured.err
    # Nothing readable: still a per-file answer, and exit 2.
    assert main(["predict", run_id, str(folder / "readme.txt"), "--json"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)["predictions"][0]
    assert main(["predict", run_id, str(folder), "--top-k", "0"]) == 2
    assert "`top_k` must be a whole number of at least 1" in capsys.readouterr().err
    assert main(["predict", "no-such-run", str(folder)]) == 2
    assert "There is no run 'no-such-run'" in capsys.readouterr().err


def test_export_with_check(workspace, capsys):
    make_dataset_on_disk("tiny", {"cat": 10, "dog": 10, "fox": 10}, splits=(6, 2, 2))
    run_id = save_model_run()
    assert main(["export", run_id, "--format", "keras", "--check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "keras" and out["path"].endswith("export/best-model.keras")
    assert out["parity"]["images"] == 6 and out["parity"]["passed"] is True
    assert main(["export", run_id, "--format", "keras"]) == 0
    assert "model.keras" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", run_id, "--format", "onnx"])


def test_module_entry_point_lists_the_verbs():
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "predict" in result.stdout and "export" in result.stdout


def test_predict_many_files_is_fast_in_batch(run_and_files, capsys, tmp_path):
    run_id, _, _ = run_and_files
    many = tmp_path / "many"
    many.mkdir()
    for i in range(40):
        (many / f"{i:02d}.png").write_bytes(png_bytes(random_pixels(24, 24, seed=i)))
    assert main(["predict", run_id, str(many), "--json", "--batch-size", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == 40
    assert all("top" in item for item in out["predictions"])
    latencies = np.array([item["latency_ms"] for item in out["predictions"]])
    assert (latencies > 0).all()
