"""Missing Python packages: the dock says what is missing and installs it with pip, in a task,
into a plugin-private folder, with numpy pinned to the version QGIS runs. Nothing is downloaded:
pip is replaced by a script that records its command line."""

import importlib.metadata
import importlib.util
import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy
import pytest


@pytest.fixture()
def settings_group(monkeypatch):
    from qgis.core import QgsSettings

    import seg_explainer.ui.settings as settings_module

    group = f"seg_explainer_test_deps_{os.getpid()}"
    monkeypatch.setattr(settings_module, "SETTINGS", group)
    yield group
    QgsSettings().remove(group)


@pytest.fixture()
def no_onnxruntime(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" fails too


@pytest.fixture()
def fake_python(tmp_path):
    """A stand-in for python that records ``-m pip ...`` calls instead of running pip."""
    log = tmp_path / "pip-calls.txt"
    script = tmp_path / "python3"
    # pip's report: onnxruntime and a dependency are missing, numpy is already there (at the
    # running version), and a second numpy must never be installed even if pip asked for it.
    report = json.dumps({"install": [
        {"metadata": {"name": "onnxruntime", "version": "1.99.0"}},
        {"metadata": {"name": "flatbuffers", "version": "99.1"}},
        {"metadata": {"name": "numpy", "version": numpy.__version__}},
        {"metadata": {"name": "numpy", "version": "99.0.0"}}]})
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
for arg in "$@"; do
  case "$prev" in -c) cat "$arg" >> {log};; esac
  prev="$arg"
done
case " $* " in *" --dry-run "*) echo '{report}';; *) echo "Successfully installed (pretend)";; esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def _wait(predicate, timeout=30.0):
    from qgis.core import QgsApplication

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met in time")
        QgsApplication.processEvents()
        time.sleep(0.005)


def test_missing_modules_sees_a_missing_package(no_onnxruntime):
    from seg_explainer.ui import deps

    missing = deps.missing_modules()
    assert missing == {"onnxruntime": "onnxruntime"}


def test_a_missing_recommended_package_is_installed_with_the_required_ones_never_blocking(
        qgis_iface, qgis_new_project, no_onnxruntime, monkeypatch, settings_group):
    from seg_explainer.ui import deps
    from seg_explainer.ui.dock import SegExplainerDock

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "threadpoolctl" else
                        find_spec(name, *a, **k))
    assert deps.missing_recommended() == {"threadpoolctl": "threadpoolctl"}
    assert deps.missing_modules() == {"onnxruntime": "onnxruntime"}
    dock = SegExplainerDock(qgis_iface)
    assert "threadpoolctl" not in dock.deps_box.label.text()
    task = dock.deps_box.make_install_task()
    assert task.projects == ["onnxruntime", "threadpoolctl"]
    assert [line for line in task.requirements if line.startswith("threadpoolctl")] == \
        [line for line in deps.requirement_lines() if line.startswith("threadpoolctl")] != []


def test_dock_says_what_is_missing_and_blocks_runs(qgis_iface, qgis_new_project, no_onnxruntime,
                                                   settings_group):
    from seg_explainer.ui import deps
    from seg_explainer.ui.dock import SegExplainerDock

    dock = SegExplainerDock(qgis_iface)
    assert not dock.deps_box.isHidden()
    text = dock.deps_box.label.text()
    assert "onnxruntime" in text and str(deps.deps_dir()) in text
    assert numpy.__version__ in text
    assert dock.deps_box.button.isEnabled()
    assert any("Install the missing Python packages" in p for p in dock.problems())
    assert not dock.result_panel.run_button.isEnabled()


def test_install_command_pins_numpy_and_targets_the_private_folder(qgis_iface, qgis_new_project,
                                                                   no_onnxruntime,
                                                                   settings_group):
    from qgis.core import QgsApplication

    from seg_explainer.ui import deps
    from seg_explainer.ui.dock import SegExplainerDock

    dock = SegExplainerDock(qgis_iface)
    task = dock.deps_box.make_install_task()
    command = task.command
    target = Path(QgsApplication.qgisSettingsDirPath()) / "python" / "seg_explainer_deps"
    assert deps.deps_dir() == target
    assert command[1:4] == ["-m", "pip", "install"]
    assert "--target" not in command     # resolving only, against QGIS's own packages
    assert {"--dry-run", "--only-binary=:all:"} <= set(command)
    assert command[command.index("--report") + 1] == "-"
    constraints = Path(command[command.index("-c") + 1])
    assert constraints.parent == target
    # the ranges of requirements.txt, markers included (pip evaluates them for this Python)
    assert command[-3:] == [line for line in deps.requirement_lines()
                            if line.startswith("onnxruntime")]
    assert f"numpy=={numpy.__version__}\n" in deps.constraints_text()
    assert Path(command[0]).name.startswith("python")


def test_install_runs_pip_in_a_task_and_adds_the_folder_to_sys_path(
        qgis_iface, qgis_new_project, no_onnxruntime, settings_group, fake_python, tmp_path,
        monkeypatch):
    from qgis.core import QgsApplication

    from seg_explainer.ui import deps
    from seg_explainer.ui.dock import SegExplainerDock

    script, log = fake_python
    target = tmp_path / "seg_explainer_deps"
    monkeypatch.setattr(deps, "deps_dir", lambda: target)
    monkeypatch.setattr(deps, "find_python", lambda: str(script))
    monkeypatch.setattr(sys, "path", list(sys.path))
    dock = SegExplainerDock(qgis_iface)
    task = dock.deps_box.install()
    assert task is not None and not dock.deps_box.button.isEnabled()
    assert task in QgsApplication.taskManager().tasks()
    _wait(lambda: dock.deps_box.pip_task is None)
    assert task.ok, task.message
    calls = log.read_text()
    assert "-m pip --version" in calls
    assert f"--dry-run --quiet --report - -c {target / 'constraints.txt'} onnxruntime" in calls
    assert f"numpy=={numpy.__version__}" in calls           # the constraints file's content
    assert (f"install --only-binary=:all: --disable-pip-version-check --no-input --no-deps "
            f"--upgrade --target {target} onnxruntime==1.99.0 flatbuffers==99.1\n") in calls
    assert task.pins == ["onnxruntime==1.99.0", "flatbuffers==99.1"]    # never numpy
    assert str(target) in sys.path
    assert "Installed onnxruntime==1.99.0" in dock.deps_box.status.text()


def test_pins_leave_out_what_is_installed_and_the_pinned_packages():
    from seg_explainer.ui import pip_rules

    installed = {"numpy": "1.0", "shapely": "2.1.2", "packaging": "23.0"}

    def version_of(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    report = json.dumps({"install": [
        {"metadata": {"name": name, "version": version}} for name, version in
        [("numpy", "2.0"), ("SciPy", "1.99"), ("shapely", "2.1.2"), ("packaging", "24.1"),
         ("scikit-image", "0.26.0")]]})
    assert pip_rules.pins_from_report(report, version_of) == ["packaging==24.1",
                                                              "scikit-image==0.26.0"]


def test_requirement_lines_cover_every_supported_python():
    """requirements.txt gives each required project a range for Python 3.11, 3.13 and 3.14."""
    from seg_explainer.ui import deps
    from seg_explainer.ui.pip_rules import project_name

    lines = deps.requirement_lines()
    for project in deps.REQUIRED.values():
        mine = [line for line in lines if project_name(line) == project]
        for version in ("3.11", "3.13", "3.14"):
            chosen = [line for line in mine if _marker_true(line, version)]
            assert len(chosen) == 1, (project, version, mine)


def _marker_true(line, python_version):
    """Evaluate a ``python_version`` marker like pip does (only the forms requirements.txt uses)."""
    if ";" not in line:
        return True
    marker = line.split(";", 1)[1].strip()
    op, value = marker.replace("python_version", "").split('"')[0:2]
    key = tuple(int(p) for p in python_version.split("."))
    wanted = tuple(int(p) for p in value.split("."))
    return {"<": key < wanted, "==": key == wanted, ">=": key >= wanted}[op.strip()]


def test_failed_pip_is_reported_not_raised(tmp_path, monkeypatch):
    from seg_explainer.ui import deps

    script = tmp_path / "python3"
    script.write_text("#!/bin/sh\ncase \"$3\" in --version) exit 0;; esac\n"
                      "echo 'ERROR: No matching distribution found for onnxruntime'; exit 1\n")
    script.chmod(0o755)
    task = deps.PipInstallTask(["onnxruntime"], target=tmp_path / "deps", python=str(script))
    assert task.run() is False
    assert "No matching distribution" in task.message and "exit code 1" in task.message


def test_python_is_found_next_to_a_qgis_binary(tmp_path):
    from seg_explainer.ui import deps

    folder = tmp_path / "bin"
    folder.mkdir()
    qgis = folder / "qgis"
    qgis.write_text("")
    python = folder / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    found = deps.python_candidates(executable=str(qgis), prefix=str(tmp_path / "none"))
    assert found[0] == str(python)
    assert str(qgis) not in found


def test_deps_folder_is_appended_once(tmp_path, monkeypatch):
    from seg_explainer.ui import deps

    monkeypatch.setattr(sys, "path", list(sys.path))
    assert deps.add_deps_dir_to_path(tmp_path) is True
    assert deps.add_deps_dir_to_path(tmp_path) is False
    assert sys.path[-1] == str(tmp_path) and sys.path.count(str(tmp_path)) == 1


def test_model_without_onnxruntime_is_a_readable_message(qgis_iface, qgis_new_project,
                                                         no_onnxruntime, settings_group,
                                                         tmp_path):
    from seg_explainer.ui.dock import SegExplainerDock

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really a model")
    dock = SegExplainerDock(qgis_iface)
    assert dock.model_picker.load(str(model)) is None
    text = dock.model_picker.label.text()
    assert "onnxruntime" in text and "Traceback" not in text
