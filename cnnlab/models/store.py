"""Named architectures saved in the workspace, and turning any reference into a spec.

Saved architectures are ``$CNNLAB_HOME/archs/<name>.json``, each the ``ArchSpec`` JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cnnlab import workspace
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import list_presets
from cnnlab.models.spec import ArchSpec, max_json_bytes


def _arch_path(name: str) -> Path:
    return workspace.inside(
        workspace.archs_root(), workspace.safe_name(name, "architecture name") + ".json"
    )


def save_arch(name: str, arch: ArchSpec | Mapping) -> str:
    """Save ``arch`` under ``name`` (replacing one of that name); returns the safe name.

    Raises:
        CnnlabError: a name with nothing usable, or the name of a preset.
    """
    arch = ArchSpec.from_dict(arch)
    safe = workspace.safe_name(name, "architecture name")
    if safe in list_presets():
        raise CnnlabError(
            f"{safe!r} is the name of a preset; choose another name for your architecture."
        )
    workspace.atomic_write_json(_arch_path(safe), arch.to_dict())
    return safe


def list_saved_archs() -> list[str]:
    """Names of the saved architectures, sorted."""
    return sorted(path.stem for path in workspace.archs_root().glob("*.json"))


def load_saved_arch(name: str) -> ArchSpec:
    data = workspace.read_json(_arch_path(name))
    if data is None:
        saved = ", ".join(list_saved_archs()) or "none yet"
        raise CnnlabError(f"There is no saved architecture named {name!r} (saved: {saved}).")
    try:
        return ArchSpec.from_dict(data)
    except CnnlabError as error:
        raise CnnlabError(f"The saved architecture {name!r} is not valid: {error}") from None


def delete_saved_arch(name: str) -> None:
    _arch_path(name).unlink(missing_ok=True)


def resolve_arch(reference: str | Path | Mapping | ArchSpec) -> ArchSpec:
    """An ArchSpec from a spec, a dict, a preset name, a JSON file or a saved name.

    A name is looked up as a preset first, then as a saved architecture; a string
    ending in ``.json`` or naming an existing file is read as JSON.

    Raises:
        CnnlabError: an unknown name (listing presets and saved names), an unreadable
            file, or an invalid spec.
    """
    if isinstance(reference, ArchSpec):
        return reference
    if isinstance(reference, Mapping):
        return ArchSpec.from_dict(reference)
    if not isinstance(reference, (str, Path)):
        raise CnnlabError(
            "An architecture must be a preset name, a saved name, a JSON file or a dict. "
            f"Received: {type(reference).__name__}"
        )
    text = str(reference).strip()
    if text in list_presets():
        return ArchSpec.preset(text)
    path = Path(text).expanduser()
    if text.endswith(".json") or path.is_file():
        return _read_file(path)
    if text in list_saved_archs():
        return load_saved_arch(text)
    saved = ", ".join(list_saved_archs()) or "none yet"
    raise CnnlabError(
        f"Unknown architecture {text!r}: not a preset, a saved architecture or a JSON file. "
        f"Presets: {', '.join(list_presets())}. Saved: {saved}."
    )


def _read_file(path: Path) -> ArchSpec:
    """An architecture file, through the same size, depth and JSON checks as an import.

    At most one byte past the size limit is read, so a huge file costs no memory.
    """
    if not path.is_file():
        raise CnnlabError(f"The architecture file {path} does not exist.")
    try:
        with path.open("rb") as handle:
            text = handle.read(max_json_bytes() + 1)
    except OSError as error:
        raise CnnlabError(
            f"The architecture file {path} cannot be read ({error.strerror or error}); "
            "check that it is a file you may read."
        ) from None
    try:
        return ArchSpec.from_json(text)
    except CnnlabError as error:
        raise CnnlabError(f"{path.name}: {error}") from None
