"""Runs every benchmark in this folder, one after another: `make bench`. fidelity*.py are left out: they need
checkouts of the original repositories (see their docstrings)."""
import subprocess
import sys
from pathlib import Path

for script in sorted(Path(__file__).parent.glob("*.py")):
    if script.name not in ("run.py", "fresh.py") and not script.name.startswith("fidelity"):
        print(f"== {script.stem}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)
