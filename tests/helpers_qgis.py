"""Helpers shared by tests that run QGIS's headless Processing executor in a subprocess."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAPPER = ROOT / "scripts" / "qgis_process.sh"


def qgis_process(args, home, *, timeout=600, check=True, extra_env=None):
    """Run ``scripts/qgis_process.sh args`` with its state in ``home``; return the CompletedProcess."""
    env = dict(os.environ, SEGX_QGIS_HOME=str(home))
    env.update(extra_env or {})
    proc = subprocess.run(["bash", str(WRAPPER), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"qgis_process {args} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc
