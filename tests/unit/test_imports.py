"""The serving path stays lean: importing the predict entry point loads no training or monitoring stack.

This is the runtime check; test_architecture checks the same on the source (lazy imports included),
with the rules of which layer may import which.
"""

import json
import subprocess
import sys

from churnflow.settings import REPO_ROOT

FORBIDDEN = ("sklearn", "pandas", "mlflow", "evidently", "scipy", "pyarrow")

PROBE = """
import json, runpy, sys
runpy.run_path(sys.argv[1], run_name="predict_main")
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in sys.argv[2:])))
"""


def test_predict_entry_point_imports_no_heavy_package():
    main = REPO_ROOT / "functions" / "predict" / "main.py"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(main), *FORBIDDEN], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
