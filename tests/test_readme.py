"""Every command and snippet in the README still works, so none drifts from the code.

- ``timm-ccrop ...`` lines (also behind ``accelerate launch ... -m timm_ccrop.cli``) are
  parsed by the real parser; ``pretrain`` lines are also resolved and validated (recipes
  exist, values in bounds). The long ones run in scripts (``scripts/first_run.py`` runs
  the main job, ``scripts/compare_crops.py`` the comparison).
- ``python scripts/NAME.py ...`` lines name scripts that exist and accept their options.
- ``python`` blocks that need no data on disk are executed.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from timm_ccrop.cli import build_parser
from timm_ccrop.cli.pretrain import resolve_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def command_lines() -> list[str]:
    """The README's shell lines, comments stripped, continuation lines joined."""
    lines = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def cli_argv(line: str) -> list[str] | None:
    """The arguments after the program of a ``timm-ccrop`` command (None for others)."""
    for part in line.split("&&"):
        words = shlex.split(part.strip())
        if words[:1] == ["timm-ccrop"]:
            return words[1:]
        if "timm_ccrop.cli" in words:
            return words[words.index("timm_ccrop.cli") + 1:]
    return None


CLI_LINES = [line for line in command_lines() if cli_argv(line) is not None]
SCRIPT_LINES = [line for line in command_lines() if re.match(r"python scripts/\w+\.py", line)]


def test_the_readme_has_the_commands_a_newcomer_needs() -> None:
    assert "pip install -e . && timm-ccrop pretrain" in command_lines()
    assert any(line.startswith("timm-ccrop report") for line in CLI_LINES)
    assert len(CLI_LINES) >= 10 and SCRIPT_LINES


@pytest.mark.parametrize("line", CLI_LINES)
def test_every_timm_ccrop_command_parses(line: str) -> None:
    args = build_parser().parse_args(cli_argv(line))
    if args.command == "pretrain":
        resolve_config(args)  # recipes exist, values are in bounds


@pytest.mark.slow
@pytest.mark.parametrize("line", SCRIPT_LINES)
def test_every_script_command_names_a_script_and_its_options(line: str) -> None:
    words = shlex.split(line)
    script = ROOT / words[1]
    assert script.is_file(), script
    flags = [w.split("=")[0] for w in words[2:] if w.startswith("--")]
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    missing = [flag for flag in flags if flag not in result.stdout]
    assert not missing, f"{words[1]} does not know {missing}"


def test_the_timm_factory_snippet_runs() -> None:
    snippet = next(body for body in blocks("python") if "create_transform" in body)
    namespace = {"pil_image": Image.new("RGB", (48, 40), (120, 30, 200))}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert tuple(namespace["view"].shape) == (3, 32, 32)
