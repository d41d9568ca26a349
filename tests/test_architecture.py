"""The package's shape (docs/architecture.md), checked by scripts/check_architecture.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import SCRIPTS, load_script

SCRIPT = SCRIPTS / "check_architecture.py"


@pytest.fixture(scope="module")
def checker():
    return load_script("check_architecture")


def test_no_cycles_no_private_imports_layers_point_one_way(checker) -> None:
    assert checker.check() == []


def test_the_checker_sees_each_kind_of_violation(checker, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "timm_ccrop"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "crop").mkdir()
    (package / "crop" / "__init__.py").write_text("")
    (package / "crop" / "boxes.py").write_text("from ..train import fit\n")  # primitive -> command
    (package / "train.py").write_text("from .runs import _private\n\n\ndef fit():\n"
                                      "    from .crop.boxes import x\n")
    (package / "runs.py").write_text("from .sub.a import y\n" + "z = 1\n" * 501)
    (package / "sub" / "a.py").write_text("from ..runs import z\n")  # a cycle with runs
    monkeypatch.setattr(checker, "ROOT", package)
    problems = "\n".join(checker.check())
    assert "layering: primitive timm_ccrop.crop.boxes imports timm_ccrop.train" in problems
    assert "private import: timm_ccrop.train imports timm_ccrop.runs._private" in problems
    assert "import inside a function: timm_ccrop.train imports timm_ccrop.crop.boxes" in problems
    assert "import cycle among: timm_ccrop.runs, timm_ccrop.sub.a" in problems
    assert "module timm_ccrop.runs has 502 lines" in problems


def test_the_command_exits_nonzero_only_on_problems() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("0 problem(s) in " + str(SCRIPT.parent.parent /
                                                                   "timm_ccrop"))


def test_the_module_map_in_the_docs_names_every_module() -> None:
    result = subprocess.run([sys.executable, str(SCRIPTS / "module_map.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (SCRIPTS.parent / "docs" / "architecture.md").read_text()
    package = SCRIPTS.parent / "timm_ccrop"
    for path in package.rglob("*.py"):
        if path.name != "__main__.py":
            assert f"`{path.relative_to(package)}`" in text, path


def test_a_new_module_makes_the_module_map_stale(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    mapper = load_script("module_map")
    package = tmp_path / "timm_ccrop"
    (package / "crop").mkdir(parents=True)
    (package / "crop" / "boxes.py").write_text('"""Boxes. More words."""\n')
    (package / "cli.py").write_text('"""The command line."""\n')
    monkeypatch.setattr(mapper, "ROOT", package)
    doc = f"# A\n\n{mapper.BEGIN}\n{mapper.END}\n\ntail\n"
    current = mapper.updated(doc)
    assert "| primitives | `crop/boxes.py` | Boxes |" in current
    assert "| command line | `cli.py` | The command line |" in current
    assert current.endswith("\n\ntail\n") and mapper.updated(current) == current
    (package / "crop" / "views.py").write_text('"""Views."""\n')
    assert mapper.updated(current) != current
    with pytest.raises(ValueError, match="no module map markers"):
        mapper.updated("# no markers\n")
