"""``orientation_matters``: stored by ingest, defaulted for older datasets, set by hand,
listed by the CLI, and honoured by the augmentation spec."""

from __future__ import annotations

import json

import pytest

from cnnlab import workspace
from cnnlab.cli import main
from cnnlab.data.augment import AugmentSpec, load_augment, save_augment
from cnnlab.data.dataset import (
    Dataset,
    get_orientation_matters,
    set_orientation_matters,
)
from cnnlab.data.ingest import add_files, add_source, ingest
from cnnlab.errors import CnnlabError
from tests.conftest import make_dataset_on_disk, write_image_folders


def _meta(name: str) -> dict:
    return workspace.read_json(workspace.dataset_dir(name) / "dataset.json")


# --- ingest ----------------------------------------------------------------------------


def test_an_uploaded_folder_of_photos_is_recorded_as_orientation_free(workspace, image_folders):
    ingest(image_folders, "pets")
    assert _meta("pets")["orientation_matters"] is False
    assert Dataset("pets").orientation_matters is False


def test_a_new_dataset_from_loose_files_is_orientation_free(workspace, image_folders):
    files = [(path.name, path.read_bytes()) for path in sorted((image_folders / "cat").iterdir())]
    add_files("loose", files, "cat")
    assert _meta("loose")["orientation_matters"] is False


def test_adding_images_keeps_the_stored_value(workspace, image_folders, tmp_path):
    ingest(image_folders, "pets")
    set_orientation_matters("pets", True)
    more = write_image_folders(tmp_path / "more", {"owl": 6}, seed=5)
    add_source("pets", more)
    assert _meta("pets")["orientation_matters"] is True
    assert "owl" in Dataset("pets").class_names


# --- older datasets and setting it -------------------------------------------------------


@pytest.mark.parametrize("channels, expected", [(1, True), (3, False)])
def test_older_datasets_default_by_channels(workspace, channels, expected):
    make_dataset_on_disk("old", {"a": 5, "b": 5}, channels=channels)
    assert "orientation_matters" not in _meta("old")
    assert Dataset("old").orientation_matters is expected
    assert get_orientation_matters("old") is expected


def test_set_round_trips_and_keeps_the_rest_of_dataset_json(tiny_dataset):
    before = _meta(tiny_dataset)
    save_augment(tiny_dataset, AugmentSpec(rotation=0.2))
    for value in (True, False, True):
        set_orientation_matters(tiny_dataset, value)
        assert get_orientation_matters(tiny_dataset) is value
        assert Dataset(tiny_dataset).orientation_matters is value
    after = _meta(tiny_dataset)
    assert after.pop("orientation_matters") is True
    assert after.pop("augment") == AugmentSpec(rotation=0.2).to_dict()
    assert after == before
    assert load_augment(tiny_dataset) == AugmentSpec(rotation=0.2)


@pytest.mark.parametrize("value", ["yes", 1, None, "false"])
def test_set_refuses_a_non_boolean(tiny_dataset, value):
    message = (
        r"`orientation_matters` must be one of False, True\. "
        rf"Received: orientation_matters={value!r}"
    )
    with pytest.raises(CnnlabError, match=message):
        set_orientation_matters(tiny_dataset, value)
    assert "orientation_matters" not in _meta(tiny_dataset)


def test_set_on_an_unknown_dataset_names_it(workspace):
    with pytest.raises(CnnlabError, match=r"There is no dataset named 'nope'"):
        set_orientation_matters("nope", True)


def test_a_damaged_stored_value_names_the_field_and_the_fix(tiny_dataset):
    path = workspace.dataset_dir(tiny_dataset) / "dataset.json"
    workspace.atomic_write_json(path, {**_meta(tiny_dataset), "orientation_matters": "yes"})
    with pytest.raises(CnnlabError, match=r"`orientation_matters` in .*Received: .*'yes'"):
        get_orientation_matters(tiny_dataset)
    set_orientation_matters(tiny_dataset, False)  # setting it repairs it
    assert Dataset(tiny_dataset).orientation_matters is False


def test_cli_datasets_lists_it(workspace, image_folders, capsys):
    ingest(image_folders, "pets")
    make_dataset_on_disk("scans", {"a": 5, "b": 5}, channels=1)
    assert main(["datasets", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["datasets"]}
    assert rows["pets"]["orientation_matters"] is False
    assert rows["scans"]["orientation_matters"] is True


# --- the augmentation spec ---------------------------------------------------------------


def test_for_orientation_drops_flips_and_caps_rotation():
    spec = AugmentSpec(horizontal_flip=True, vertical_flip=True, rotation=0.3, zoom=0.2)
    oriented = spec.for_orientation(True)
    assert not oriented.horizontal_flip and not oriented.vertical_flip
    assert oriented.rotation == pytest.approx(0.05)
    assert oriented.zoom == spec.zoom
    assert oriented.active_ops() == ["rotation", "zoom"]
    assert spec.for_orientation(False) == spec
    # A small rotation is kept as it is.
    assert AugmentSpec(rotation=0.02).for_orientation(True).rotation == pytest.approx(0.02)
    with pytest.raises(CnnlabError, match="Received: orientation_matters='no'"):
        spec.for_orientation("no")


def test_recommended_flips_only_where_orientation_does_not_matter():
    assert AugmentSpec.recommended(3).horizontal_flip  # one positional argument still works
    assert AugmentSpec.recommended(3, orientation_matters=False).horizontal_flip
    oriented = AugmentSpec.recommended(3, orientation_matters=True)
    assert not oriented.horizontal_flip and not oriented.vertical_flip
    assert not oriented.is_neutral()
    assert oriented.for_orientation(True) == oriented
    for flag in (False, True):
        gray = AugmentSpec.recommended(1, orientation_matters=flag)
        assert not gray.horizontal_flip and not gray.vertical_flip
