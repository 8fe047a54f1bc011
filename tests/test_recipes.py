"""Recipe notebooks run top to bottom, offline, in smoke mode, in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.ipynb"))


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("notebook", RECIPES, ids=lambda path: path.name)
def test_recipe_runs(notebook, tmp_path):
    cells = json.loads(notebook.read_text())["cells"]
    source = "\n\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    script = tmp_path / "recipe.py"
    script.write_text(source)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
        timeout=900, env={**os.environ, "VIT_ZOO_RECIPE_SMOKE": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "test accuracy" in result.stdout
