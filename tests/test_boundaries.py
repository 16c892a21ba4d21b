"""Module boundaries from STYLE.md, checked by reading imports."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in (ROOT / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_trainables_never_import_ray():
    offenders = [p for p, names in imported_modules("trainables").items() if "ray" in names]
    assert offenders == []


def test_search_spaces_and_analysis_need_no_ray_or_torch():
    for folder in ("search_spaces", "analysis"):
        offenders = [p for p, names in imported_modules(folder).items() if names & {"ray", "torch"}]
        assert offenders == [], folder


def test_no_unsafe_loading():
    torch_load, yaml_load = "torch" + ".load(", "yaml" + ".load("  # spelled apart so this file is no match itself
    for folder in ("trainables", "orchestrator", "analysis", "search_spaces"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for line in text.splitlines():
                if torch_load in line:
                    assert "weights_only=True" in line, f"{path}: {line}"
                assert yaml_load not in line, f"{path}: {line}"


def test_explain_never_imports_ray_and_loads_weights_only():
    # explain/ holds the torch side of interpretability (analysis/ stays torch-free): it may use torch,
    # captum and trainables, but like trainables it runs without Ray (nor orchestrator/, which needs it), and it
    # only loads tensors
    offenders = [p for p, names in imported_modules("explain").items() if names & {"ray", "orchestrator"}]
    assert offenders == []
    torch_load = "torch" + ".load("
    for path in (ROOT / "explain").rglob("*.py"):
        for line in path.read_text().splitlines():
            if torch_load in line:
                assert "weights_only=True" in line, f"{path}: {line}"
