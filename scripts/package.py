"""Build dist/seg_explainer-<version>.zip, the file a user installs with "Install from ZIP"."""

import argparse
import configparser
import os
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ["metadata.txt", "__init__.py", "plugin.py", "LICENSE", "README.md", "requirements.txt",
           "core", "processing_provider", "ui", "resources"]
SKIP_SUFFIXES = {".pyc", ".pyo"}
SKIP_DIRS = {"__pycache__", ".pytest_cache"}


def plugin_version():
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    return meta["general"]["version"]


def iter_files():
    for entry in INCLUDE:
        path = ROOT / entry
        if path.is_file():
            yield path
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                if Path(name).suffix not in SKIP_SUFFIXES:
                    yield Path(dirpath) / name


def build(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"seg_explainer-{plugin_version()}.zip"
    tmp = target.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in iter_files():
            zf.write(path, Path("seg_explainer") / path.relative_to(ROOT))
    tmp.replace(target)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "dist"))
    print(build(parser.parse_args().out))
