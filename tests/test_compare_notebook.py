"""The run-comparison notebook runs top to bottom on a fake sweep and draws the report's plots."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.helpers.runs import make_run, make_sweep

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_runs.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)


def test_notebook_compares_a_sweep(tmp_path: Path, kernel_env: str) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    running = make_run(tmp_path / "running", test_f1=(0.61,))
    (running / "round_1").mkdir()
    for seed in (1, 2):  # one configuration over two seeds: the groups section
        make_run(
            tmp_path / "seeds" / f"seed={seed}",
            [f"seed={seed}"],
            test_f1=(0.6, 0.6 + seed / 50),
            student_rounds=1,
            seed=seed,
            settings={"pseudo_label.strategy.threshold": 0.85},
        )
    out = tmp_path / "out"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    dirs = [str(sweep), str(running), str(tmp_path / "seeds")]
    params.source += f"\nRUN_DIRS = {dirs!r}\nOUT_DIR = {str(out)!r}"
    NotebookClient(
        nb, kernel_name=kernel_env, timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # threshold curve, per-emotion bars, 2 confusion matrices; the groups' change and F1 bars
    assert len(images) == 6
    tables = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| data=rafdb,pseudo_label.strategy.threshold=0.9 |" in tables
    assert "| running |" in tables
    assert "| group | n | teacher F1 |" in tables and "± " in tables
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # best by validation, not by test
    assert "data=rafdb,pseudo_label.strategy.threshold=0.9  (" in printed
    assert (out / "report.csv").is_file()
