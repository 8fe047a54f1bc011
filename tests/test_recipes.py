"""Recipe notebooks executed top to bottom in a real Jupyter kernel (nbclient), offline, in
smoke mode (`VIT_ZOO_RECIPE_SMOKE=1`: fewer epochs), each in an empty working folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO_ROOT / "recipes").glob("*.ipynb"))


def test_recipes_are_numbered_and_committed_without_outputs():
    assert RECIPES
    numbers = [re.match(r"(\d\d)_[a-z0-9_]+\.ipynb$", path.name) for path in RECIPES]
    assert all(numbers), [path.name for path in RECIPES]
    assert len({match.group(1) for match in numbers}) == len(RECIPES)
    listed = (REPO_ROOT / "recipes" / "README.md").read_text()
    for path in RECIPES:
        assert path.name in listed, f"recipes/README.md does not list {path.name}"
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata["kernelspec"]["name"] == "python3"
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (
                    f"{path.name} is committed with outputs; clear them before committing")


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_recipe_runs_in_a_kernel(path, tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_ZOO_RECIPE_SMOKE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a cell that raises fails the test with that cell's traceback
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    printed = "".join(output.get("text", "") for cell in code for output in cell.outputs
                      if output.output_type == "stream" and output.name == "stdout")
    assert printed.strip(), f"{path.name} printed nothing"
