"""What an imported architecture may be: its JSON's size and depth, its weights' folder."""

from __future__ import annotations

import json
import os

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.models import ArchSpec, resolve_arch
from cnnlab.models.spec import _nesting_depth
from cnnlab.train import pretrained

TOO_DEEP = r"nests deeper than the limit of 16 levels \(CNNLAB_LIMIT_ARCH_JSON_MAX_DEPTH\)"
TOO_BIG = r"larger than the limit of 256 KB \(CNNLAB_LIMIT_ARCH_JSON_MAX_KB\)"


# -- JSON size and depth -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('{"preset": "simple"}', 1),
        ('{"blocks": [{"type": "conv", "kernels": [3, 5]}]}', 4),
        ('["[[[[{{{", {"a": "]]]}"}]', 2),  # brackets inside strings do not count
        ('["say \\"[[[\\" ok", [["\\\\"]]]', 3),  # nor after escaped quotes or backslashes
        ('["unclosed [[[[', 1),
        ("[" * 100_000, 100_000),
    ],
)
def test_nesting_depth_skips_strings(text, depth):
    assert _nesting_depth(text) == depth


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000])
def test_deep_json_is_refused_without_a_recursion_error(text):
    with pytest.raises(CnnlabError, match=TOO_DEEP):
        ArchSpec.from_json(text)


def test_recursion_inside_the_parser_is_a_message_too(monkeypatch):
    def recurse(text):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(json, "loads", recurse)
    with pytest.raises(CnnlabError, match=TOO_DEEP):
        ArchSpec.from_json('{"preset": "simple"}')


def test_depth_limit_is_the_owners_to_set(monkeypatch):
    blocks = '{"blocks": [{"type": "conv", "filters": 8}]}'  # 3 levels
    assert ArchSpec.from_json(blocks).label == "custom (1 blocks)"
    monkeypatch.setenv("CNNLAB_LIMIT_ARCH_JSON_MAX_DEPTH", "2")
    with pytest.raises(CnnlabError, match=r"deeper than the limit of 2 levels"):
        ArchSpec.from_json(blocks)


def test_big_json_is_refused_before_parsing(monkeypatch):
    padding = " " * (256 * 1024)
    with pytest.raises(CnnlabError, match=TOO_BIG):
        ArchSpec.from_json('{"preset": "simple"}' + padding)
    with pytest.raises(CnnlabError, match=TOO_BIG):
        ArchSpec.from_json(('{"preset": "simple"}' + padding).encode())
    monkeypatch.setenv("CNNLAB_LIMIT_ARCH_JSON_MAX_KB", "1")
    with pytest.raises(CnnlabError, match=r"larger than the limit of 1 KB"):
        ArchSpec.from_json('{"preset": "simple"}' + " " * 1024)
    assert ArchSpec.from_json('{"preset": "simple"}') == ArchSpec.preset("simple")


def test_files_go_through_the_same_checks_and_name_the_file(workspace, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(CnnlabError, match=rf"^deep.json: The architecture JSON {TOO_DEEP}"):
        resolve_arch(str(deep))
    big = tmp_path / "big.json"
    with big.open("w") as handle:  # 5 MB; only the first 256 KB + 1 byte is read
        handle.write('{"preset": "simple"}' + " " * (5 * 1024 * 1024))
    with pytest.raises(CnnlabError, match=rf"^big.json: The architecture JSON is {TOO_BIG}"):
        resolve_arch(str(big))
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"preset": "café"}'.encode("latin-1"))
    with pytest.raises(CnnlabError, match=r"^latin.json: The architecture is not UTF-8 text"):
        resolve_arch(str(latin))
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"type": "conv", "filters": 8}]))  # a bare list of blocks
    assert resolve_arch(str(good)).label == "custom (1 blocks)"


# -- a backbone's weights file ---------------------------------------------------------------


@pytest.fixture
def folders(workspace, tmp_path, monkeypatch):
    """The workspace, a Keras cache and a folder outside both, each with a weights file."""
    keras_home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv(pretrained.WEIGHTS_ENV, raising=False)
    outside = tmp_path / "elsewhere"
    for folder in (workspace / "weights", keras_home / "models", outside):
        folder.mkdir(parents=True)
        (folder / "w.h5").write_bytes(b"weights")
    return {"workspace": workspace, "cache": keras_home / "models", "outside": outside}


def imported(weights: str) -> ArchSpec:
    """An architecture with this backbone weights file, imported as a visitor would."""
    return ArchSpec.from_json(json.dumps({"preset": "transfer", "options": {"weights": weights}}))


def refusal(weights: str) -> str:
    with pytest.raises(CnnlabError) as caught:
        imported(weights)
    return str(caught.value)


def test_weights_inside_the_workspace_or_keras_cache(folders):
    for weights in (
        "imagenet",
        "none",
        "None",
        str(folders["workspace"] / "weights" / "w.h5"),
        str(folders["workspace"] / "weights" / "not-yet.h5"),  # the builder says it is missing
        str(folders["cache"] / "w.h5"),
        str(folders["outside"] / ".." / "keras-home" / "models" / "w.h5"),
    ):
        assert imported(weights).options["weights"] == weights


def test_weights_outside_get_one_message_whether_or_not_the_file_exists(folders):
    there = str(folders["outside"] / "w.h5")
    missing = str(folders["outside"] / "missing.h5")
    message = refusal(there)
    assert message.startswith(
        "`weights` must be 'imagenet', 'none' or a weights file inside the workspace ("
    )
    assert f"or the Keras cache ({folders['cache']})" in message
    assert f"Received: weights={there!r}" in message
    assert refusal(missing) == message.replace(there, missing)
    for weights in ("/etc/passwd", "/etc/no-such-file", "~/../../etc/passwd"):
        assert refusal(weights) == message.replace(there, weights)


def test_dot_dot_and_symlinks_cannot_leave_the_folders(folders):
    escape = folders["workspace"] / "weights" / ".." / ".." / "elsewhere" / "w.h5"
    assert os.path.exists(escape)
    refusal(str(escape))
    link = folders["workspace"] / "weights" / "link.h5"
    link.symlink_to(folders["outside"] / "w.h5")
    refusal(str(link))
    linked_folder = folders["cache"] / "more"
    linked_folder.symlink_to(folders["outside"], target_is_directory=True)
    refusal(str(linked_folder / "w.h5"))
    loop = folders["workspace"] / "loop.h5"
    loop.symlink_to(loop)
    refusal(str(loop))


def test_imported_block_lists_and_builds_are_checked_but_stored_records_still_read(folders):
    from cnnlab.models.builder import build_model

    outside = str(folders["outside"] / "w.h5")
    with pytest.raises(CnnlabError, match=r"`weights` must be 'imagenet', 'none' or a weights"):
        ArchSpec.from_json(json.dumps([{"type": "backbone", "weights": outside}]))
    # A run record written before this rule (or with the owner's file, since unset) still
    # reads, so the run stays listed; building from it is refused.
    stored = ArchSpec.preset("transfer", weights=outside)
    with pytest.raises(CnnlabError, match=r"inside the workspace"):
        build_model(stored, image_size=32, channels=3, num_classes=2)


def test_the_owners_weights_file_is_allowed_wherever_it_is(folders, monkeypatch):
    """CNNLAB_PRETRAINED_WEIGHTS is the machine owner's setting, not a visitor's."""
    owners = folders["outside"] / "w.h5"
    monkeypatch.setenv(pretrained.WEIGHTS_ENV, str(owners))
    found = pretrained.find_weights()
    assert found is not None and found.source == str(owners)
    assert pretrained.transfer_arch(found).options["weights"] == str(owners)
    other = folders["outside"] / "other.h5"
    other.write_bytes(b"weights")
    refusal(str(other))  # only that one file
