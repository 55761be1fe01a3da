"""`import components, pipelines` (and every component shell) must not load torch or tensorflow."""

import subprocess
import sys

CHECK = """
import sys
import components, pipelines
import pipelines.train_and_deploy
heavy = sorted(m for m in ("torch", "tensorflow", "onnxruntime", "mlflow", "optuna", "sklearn") if m in sys.modules)
print(",".join(heavy))
"""


def test_import_components_and_pipelines_stays_light():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules loaded at import: {out.stdout.strip()}"


def test_check_can_fail():
    """The same probe sees torch when something does import it (so the test above can fail)."""
    probe = CHECK.replace("import pipelines.train_and_deploy", "import pipelines.train_and_deploy, torch")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "torch" in out.stdout
