"""Runs every benchmark in this folder, one after another: `make bench`. fidelity.py is left out: it needs
checkouts of the original repositories (see its docstring)."""
import subprocess
import sys
from pathlib import Path

for script in sorted(Path(__file__).parent.glob("*.py")):
    if script.name not in ("run.py", "fresh.py", "fidelity.py"):
        print(f"== {script.stem}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)
