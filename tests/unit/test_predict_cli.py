"""``python -m cnnlab predict`` and ``export`` on a run folder."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.cli import main
from tests.conftest import REPO, make_dataset_on_disk
from tests.unit.test_predict import (
    direct_probabilities,
    png_bytes,
    random_pixels,
    save_model_run,
)


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


def test_predict_many_files_in_batches_matches_one_by_one(run_and_files, capsys, tmp_path):
    """40 files in batches of 16: three model calls in all, each file's probabilities as
    when predicted alone and as the model gives them when called by hand, and per-file
    latencies that add up to no more than the time the batch took."""
    from cnnlab import predict

    run_id, _, _ = run_and_files
    many = tmp_path / "many"
    many.mkdir()
    data = {str(many / f"{i:02d}.png"): png_bytes(random_pixels(24, 24, seed=i)) for i in range(40)}
    for file, content in data.items():
        Path(file).write_bytes(content)

    # Spies: the batch size of every call of the compiled forward pass (the one place the
    # model runs), and the wall time of predict_files, made while predict_files runs.
    calls, predicting, elapsed = [], [], []
    real_forward, real_predict_files = predict._compiled_forward, predict.Predictor.predict_files

    def counting_forward(*args, **kwargs):
        forward = real_forward(*args, **kwargs)

        def spy(images):
            if predicting:
                calls.append(int(images.shape[0]))
            return forward(images)

        return spy

    def timed_predict_files(self, *args, **kwargs):
        predicting.append(True)
        start = time.perf_counter()
        try:
            return real_predict_files(self, *args, **kwargs)
        finally:
            elapsed.append(time.perf_counter() - start)
            predicting.clear()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict, "_compiled_forward", counting_forward)
        patch.setattr(predict.Predictor, "predict_files", timed_predict_files)
        code = main(["predict", run_id, str(many), "--json", "--batch-size", "16", "--top-k", "3"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert calls == [16, 16, 8]  # batched: not one model call per image

    predictions = out["predictions"]
    assert [item["file"] for item in predictions] == list(data)
    alone = predict.Predictor(run_id).load()
    for item in predictions:
        batched = {top["label"]: top["probability"] for top in item["top"]}
        one = alone.predict_bytes(data[item["file"]], top_k=3)
        direct = direct_probabilities(alone, data[item["file"]])
        assert [top["label"] for top in item["top"]] == [label for label, _ in one.top]
        for index, label in enumerate(alone.class_names_):
            assert batched[label] == pytest.approx(one.probabilities[index], abs=2e-6)
            assert batched[label] == pytest.approx(direct[index], abs=2e-6)

    # Each file's latency is its own decode plus its share of its batch's model call:
    # disjoint slices of the time predict_files took, so they cannot add up to more.
    # (Charging each image its whole batch's call would count each call 8 or 16 times.)
    latencies = [item["latency_ms"] for item in predictions]
    assert all(latency > 0 for latency in latencies)
    assert sum(latencies) <= elapsed[0] * 1000 + 0.05  # + rounding to 3 decimals
    # The speed counts the whole of predict_files (the command's timer encloses ours).
    assert 0 < out["images_per_s"] <= 40 / elapsed[0] + 0.01
