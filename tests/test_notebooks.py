"""The exploration notebook runs top to bottom on a tiny data set and draws its figures."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.helpers.layouts import emotion_folders, make_class_folders

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_data.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)


def test_notebook_draws_balance_and_sample_grid(tmp_path: Path, kernel_env: str) -> None:
    data = make_class_folders(
        tmp_path / "faces",
        {
            "train": emotion_folders((3, 2, 1, 4, 2, 1, 0)),  # no neutral: shown as absent
            "test": emotion_folders((1, 1, 1, 1, 1, 1, 1)),
        },
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += f'\nDATA_KIND = "folder"\nDATA_ROOT = {str(data)!r}\nSAMPLES_PER_EMOTION = 3'
    NotebookClient(
        nb,
        kernel_name=kernel_env,
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the class-balance bars and the sample grid
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "! train has no neutral" in printed
