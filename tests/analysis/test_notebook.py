"""notebooks/analysis.ipynb runs top to bottom against a study (synthetic Parquet parts) and draws figures."""
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from analysis.synthetic import synthetic_tables, write_tables

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "analysis.ipynb"


def test_analysis_notebook_runs(tmp_path, monkeypatch):
    study = write_tables(synthetic_tables(n_trials=16, n_epochs=5, seeds=2, seed=5), tmp_path / "study")
    monkeypatch.setenv("TLSWEEP_STUDY", str(study))   # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # runs in the kernel `python3` of this interpreter (jupyter_client maps it to sys.executable)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "16 trials" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the notebook drew no figure"


def run_notebook(tmp_path, nb):
    from nbclient.exceptions import CellExecutionError
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    except CellExecutionError as e:
        return str(e)
    return None


def test_the_study_is_a_parameter_of_the_first_cell(tmp_path, monkeypatch):
    """As papermill does (-p STUDY path): a cell after the one tagged "parameters" sets STUDY; no env var."""
    study = write_tables(synthetic_tables(n_trials=6, n_epochs=3, seed=7), tmp_path / "elsewhere" / "s")
    monkeypatch.delenv("TLSWEEP_STUDY", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert "parameters" in nb.cells[code[0]].metadata.get("tags", [])
    nb.cells.insert(code[0] + 1, nbformat.v4.new_code_cell(f"STUDY = {str(study)!r}"))
    nb.cells = nb.cells[:code[1] + 2]   # the parameters, the injected cell and the cell that loads the study
    assert run_notebook(tmp_path, nb) is None
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "6 trials" in text


def test_a_missing_study_says_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TLSWEEP_STUDY", str(tmp_path / "nope"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    nb.cells = nb.cells[:code[1] + 1]
    error = run_notebook(tmp_path, nb)
    assert error and "no such study folder; set TLSWEEP_STUDY=" in error
