"""A real (non-editable) install: recipes, the zoo index and bundled weights are in the wheel.

The editable install the other tests run against reads zoo/ from the source tree, so it
cannot tell whether package-data patterns ship the files. This test builds and installs the
package with pip into a fresh virtual environment (system site-packages for torch and timm,
no dependency resolution, no network), runs that environment's python from a folder
outside the repository, and loads a zoo model by its timm name from the installed copy.

The dependency floors (``.ci/floors.txt``, re-tested by ``.ci/floors``) are checked here too:
that check only reads files, so it is not marked ``install``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO_ROOT = Path(__file__).resolve().parents[1]
FLOORS = REPO_ROOT / ".ci" / "floors.txt"

CHECK = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import timm, torch
    import timm_ccrop
    from timm_ccrop.config import list_recipes, RECIPE_DIR
    from timm_ccrop.hub.zoo import load_zoo, zoo_root, entry_problems

    package = Path(timm_ccrop.__file__).resolve().parent
    entries = load_zoo()
    loaded = {}
    for entry in entries:
        model = timm.create_model(entry.name, pretrained=True).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, *entry.input["input_size"]))
        loaded[entry.name] = {"file": model.pretrained_cfg.get("file"),
                              "shape": list(out.shape),
                              "problems": entry_problems(entry)}
    print(json.dumps({
        "package": str(package),
        "zoo_root": str(zoo_root().resolve()),
        "recipe_dir": str(Path(RECIPE_DIR).resolve()),
        "recipes": list_recipes(),
        "probes": sorted(p.name for p in (zoo_root() / "probes").glob("*.yaml")),
        "weights": sorted(str(p.relative_to(zoo_root())) for p in
                          (zoo_root() / "weights").rglob("*") if p.is_file()),
        # every zoo entry is a timm pretrained tag (rcrop entries have no 'ccrop' in them)
        "pretrained": [n for n in timm.list_pretrained() if n in {e.name for e in entries}],
        "loaded": loaded,
    }))
""")


def _copy_source(target: Path) -> Path:
    """The files a build reads (the working tree, not git: uncommitted files count too)."""
    source = target / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("timm_ccrop", "zoo"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
    return source


@pytest.mark.install
def test_non_editable_install_ships_recipes_zoo_and_weights(tmp_path: Path) -> None:
    source = _copy_source(tmp_path)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
                   "PIP_NO_INDEX": "1", "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("PYTHONPATH", None)
    # pip runs as a module of the venv's python (the system site-packages make the system
    # pip importable), so it installs into the venv
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--ignore-installed", "--quiet", str(source)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    done = subprocess.run([str(python), "-c", CHECK], cwd=outside, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    package = Path(report["package"])
    assert package.is_relative_to(env_dir.resolve()), f"imported {package}, not the install"
    assert not package.is_relative_to(REPO_ROOT)
    assert Path(report["zoo_root"]) == package / "zoo"
    assert Path(report["recipe_dir"]) == package / "zoo" / "recipes"
    shipped = sorted(p.stem for p in (REPO_ROOT / "zoo" / "recipes").glob("*.yaml"))
    assert report["recipes"] == shipped and shipped
    assert report["probes"] == sorted(p.name for p in (REPO_ROOT / "zoo" / "probes")
                                      .glob("*.yaml"))
    bundled = sorted(str(p.relative_to(REPO_ROOT / "zoo")) for p in
                     (REPO_ROOT / "zoo" / "weights").rglob("*") if p.is_file())
    assert report["weights"] == bundled and bundled
    assert report["loaded"], "the installed zoo lists no model"
    assert sorted(report["pretrained"]) == sorted(report["loaded"])
    for name, info in report["loaded"].items():
        assert info["problems"] == [], (name, info["problems"])
        if info["file"]:
            assert Path(info["file"]).is_relative_to(package), (name, info["file"])
        assert info["shape"][0] == 1


def _floor(requirement: Requirement) -> Version | None:
    """The version of ``requirement``'s ``>=`` specifier, None when it has none."""
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert len(floors) <= 1, f"{requirement} declares more than one floor"
    return floors[0] if floors else None


def _pinned_floors() -> dict[str, Version]:
    """``.ci/floors.txt``: one ``name==version`` a line, ``#`` comments."""
    pins: dict[str, Version] = {}
    for number, line in enumerate(FLOORS.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", \
            f"{FLOORS.name}:{number}: {text!r} is not name==version"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{FLOORS.name}:{number}: {name} is pinned twice"
        pins[name] = Version(specifiers[0].version)
    return pins


def test_floors_file_pins_every_floor_of_pyproject() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = _pinned_floors()
    declared = {}
    for text in project["dependencies"]:
        requirement = Requirement(text)
        floor = _floor(requirement)
        assert floor is not None, f"the dependency {text!r} declares no >= floor"
        declared[canonicalize_name(requirement.name)] = floor
    # every runtime dependency is pinned at its floor, and nothing else is pinned
    assert sorted(pins) == sorted(declared)
    assert pins == declared  # as versions: 2.1 is 2.1.0
    # an extra that names a pinned package (say numpy) may not declare another floor
    for extra, texts in project.get("optional-dependencies", {}).items():
        for text in texts:
            requirement = Requirement(text)
            name, floor = canonicalize_name(requirement.name), _floor(requirement)
            if name in pins and floor is not None:
                assert floor == pins[name], f"extra {extra!r}: {text!r}, but {FLOORS.name} " \
                                            f"pins {name}=={pins[name]}"


def test_every_subpackage_is_listed_in_pyproject() -> None:
    # setuptools ships only the listed packages: a new folder left out installs a broken
    # package that only the (slow) non-editable install test would notice
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]
                 ["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO_ROOT).parts)
             for p in (REPO_ROOT / "timm_ccrop").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
