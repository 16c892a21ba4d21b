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
