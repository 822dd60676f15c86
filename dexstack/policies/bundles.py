"""Where policy bundles live: ``policies/<name>/`` of the package, folders on ``$DEXSTACK_POLICY_PATH``, or a path."""

from __future__ import annotations

import os
from pathlib import Path

from dexstack.paths import data_path
from dexstack.policies.errors import PolicyError
from dexstack.policies.manifest import MANIFEST_FILE, PolicyManifest, load_manifest

REFERENCES_DIR = "references"  # policies/references/<name>.npz: reference trajectories shared by bundles


def search_dirs() -> list[Path]:
    """Folders holding bundles, first match wins: ``$DEXSTACK_POLICY_PATH`` (os.pathsep-separated), then the
    package's."""
    dirs = [Path(p) for p in os.environ.get("DEXSTACK_POLICY_PATH", "").split(os.pathsep) if p]
    dirs.append(data_path("policies"))
    return dirs


def bundle_dir(name_or_path: str) -> Path:
    """The folder of a bundle named ``name_or_path`` (or that path itself)."""
    if not name_or_path or not name_or_path.strip():
        raise PolicyError("no policy named: give a bundle name or a path to a bundle folder")
    path = Path(name_or_path).expanduser()
    if path.name == MANIFEST_FILE:
        path = path.parent
    if os.sep in name_or_path or path.is_absolute() or name_or_path.startswith("."):
        if not (path / MANIFEST_FILE).is_file():
            raise PolicyError(f"'{name_or_path}' is not a policy bundle: {path / MANIFEST_FILE} does not exist")
        return path.resolve()
    for folder in search_dirs():
        if (folder / name_or_path / MANIFEST_FILE).is_file():
            return (folder / name_or_path).resolve()
    known = sorted(list_bundles())
    raise PolicyError(f"unknown policy '{name_or_path}': known bundles are {known} "
                      f"(searched {[str(d) for d in search_dirs()]})")


def list_bundles() -> dict[str, Path]:
    """name -> folder of every bundle found (the first of a name wins, as in :func:`bundle_dir`)."""
    found: dict[str, Path] = {}
    for folder in search_dirs():
        if not folder.is_dir():
            continue
        for manifest in sorted(folder.glob(f"*/{MANIFEST_FILE}")):
            found.setdefault(manifest.parent.name, manifest.parent.resolve())
    return found


def load_bundle_manifest(name_or_path: str) -> PolicyManifest:
    return load_manifest(bundle_dir(name_or_path))


def reference_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A reference trajectory file: a path (absolute, or relative to the bundle), or a name in policies/references/."""
    candidates = []
    path = Path(name_or_path).expanduser()
    if path.is_absolute():
        candidates.append(path)
    else:
        if relative_to is not None:
            candidates.append(relative_to / path)
        candidates += [d / REFERENCES_DIR / path for d in search_dirs()]
        if path.suffix != ".npz":
            candidates += [d / REFERENCES_DIR / f"{name_or_path}.npz" for d in search_dirs()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise PolicyError(f"reference trajectory '{name_or_path}' not found (looked for {[str(c) for c in candidates]})")


def list_references() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in search_dirs():
        for path in sorted((folder / REFERENCES_DIR).glob("*.npz")) if (folder / REFERENCES_DIR).is_dir() else []:
            found.setdefault(path.stem, path.resolve())
    return found
