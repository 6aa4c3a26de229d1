from dataclasses import dataclass

import pytest

from cnnlab import workspace as workspace_module
from cnnlab.errors import CnnlabError
from cnnlab.spec import Choice, Range, Spec, param


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("My Cats!", "My-Cats"),
        ("../../etc/passwd", "etc-passwd"),
        ("Ünïcode", "Unicode"),
        (".hidden", "hidden"),
        ("a/b\\c", "a-b-c"),
    ],
)
def test_safe_name(raw, safe):
    assert workspace_module.safe_name(raw) == safe


@pytest.mark.parametrize("raw", ["", "..", "///", "   ", "日本"])
def test_safe_name_refuses_empty(raw):
    with pytest.raises(CnnlabError, match="no usable characters"):
        workspace_module.safe_name(raw)


def test_dataset_dir_stays_inside(workspace):
    assert (
        workspace_module.dataset_dir("../../x").parent == workspace_module.datasets_root().resolve()
    )
    with pytest.raises(CnnlabError, match="outside"):
        workspace_module.inside(workspace_module.datasets_root(), "..", "..", "x")


def test_atomic_write_json_leaves_no_temp(tmp_path):
    target = tmp_path / "d" / "x.json"
    workspace_module.atomic_write_json(target, {"a": 1})
    workspace_module.atomic_write_json(target, {"a": 2})
    assert workspace_module.read_json(target) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_atomic_write_keeps_old_file_when_write_fails(tmp_path):
    target = tmp_path / "x.json"
    workspace_module.atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        workspace_module.atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert workspace_module.read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_read_json_damaged(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(CnnlabError, match="not valid JSON"):
        workspace_module.read_json(bad)


@dataclass(frozen=True)
class Demo(Spec):
    kind = "demo spec"
    rotation: float = param(0.0, Range(0.0, 0.5), "fraction of a turn")
    count: int = param(3, Range(1, 10, integer=True), "how many")
    mode: str = param("a", Choice(("a", "b")), "which")
    items: tuple = param((), None, "a list")


def test_spec_messages_name_field_range_and_value():
    with pytest.raises(
        CnnlabError, match=r"`rotation` must be in \[0, 0.5\]. Received: rotation=0.9"
    ):
        Demo(rotation=0.9)
    with pytest.raises(CnnlabError, match="`count` must be a whole number"):
        Demo(count=2.5)
    with pytest.raises(CnnlabError, match="`mode` must be one of 'a', 'b'. Received: mode='c'"):
        Demo(mode="c")


def test_spec_round_trip_and_unknown_keys():
    spec = Demo(rotation=0.25, count=4, mode="b", items=(1, 2))
    assert Demo.from_dict(spec.to_dict()) == spec
    with pytest.raises(CnnlabError, match="Unknown demo spec field.*rotaton.*Valid fields"):
        Demo.from_dict({"rotaton": 0.1})
    assert Demo.limits("count") == Range(1, 10, integer=True)
