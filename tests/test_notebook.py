"""The Colab notebook runs top to bottom on CPU, with the smoke configuration on the toy set."""

import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "colab.ipynb"


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters, = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = (f'DATASET = 0\nCONFIG = "smoke"\nOVERRIDES = ["steps=100"]\n'
                         f'DATA_DIR = None\nOUTPUT_DIR = "{tmp_path / "out"}"')
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "SUBMIT" in text or "ABSTAIN" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5  # the report's figures, inline
    assert (tmp_path / "out" / "00_toy_dataset" / "report.json").is_file()
    assert not any(o.output_type == "error" for o in outputs)
