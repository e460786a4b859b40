"""Deliberate errors (core.errors.UserError) reach the user as what to do; anything else is a
bug and reaches the log as a traceback, never dressed up as a model or input problem."""

import pytest

from helpers_qgis import ROI_OIL, provider  # noqa: F401 (fixture)

SMALL = {"WINDOW": 64, "BATCH_SIZE": 8, "SEED": 3, "N_MASKS": 8}


def test_the_hierarchy_is_one_family_of_value_errors():
    from seg_explainer.core.errors import (DependencyError, ExplanationCancelled, InputError,
                                           ModelError, OutputError, UserError)
    from seg_explainer.core.onnx_check import ModelFileError

    for kind in (InputError, ModelError, ModelFileError, DependencyError, OutputError):
        assert issubclass(kind, UserError) and issubclass(kind, ValueError)
    assert not issubclass(ExplanationCancelled, UserError)


class _Context:
    def __init__(self, paths):
        self.loading = {p: object() for p in paths}

    def layersToLoadOnCompletion(self):  # noqa: N802
        return dict(self.loading)

    def setLayersToLoadOnCompletion(self, layers):  # noqa: N802
        self.loading = dict(layers)


def test_run_guarded_turns_user_errors_into_messages_and_lets_bugs_through(qgis_app):
    from qgis.core import QgsProcessingException

    from seg_explainer.core.errors import InputError, ModelError
    from seg_explainer.processing_provider.common import run_guarded

    def guarded(exc):
        context = _Context(["/out/a.tif"])

        def work():
            raise exc

        try:
            run_guarded(work, context, None, [("EXCITATION", "/out/a.tif")], noun="Explanation",
                        memory_message="Lower BATCH_SIZE.")
        finally:
            assert context.loading == {}      # never loaded, whatever happened
        raise AssertionError("run_guarded returned")

    for exc, text in ((InputError("BANDS: choose 1 band"), "BANDS: choose 1 band"),
                      (ModelError("the model returned NaN; check BANDS"), "returned NaN"),
                      (MemoryError(), "Lower BATCH_SIZE."),
                      (OSError(28, "No space left on device"), "no space left")):
        with pytest.raises(QgsProcessingException, match=text) as raised:
            guarded(exc)
        assert "model failed" not in str(raised.value)
    for bug in (KeyError("window"), TypeError("unsupported operand"), ZeroDivisionError()):
        with pytest.raises(type(bug)):
            guarded(bug)
    with pytest.raises(ValueError, match="internal"):   # a plain ValueError is a bug too
        guarded(ValueError("internal shape mismatch"))


def _run(alg, params, feedback):
    import processing
    from qgis.core import QgsProcessingContext

    return processing.run(f"segexplainer:{alg}", params, context=QgsProcessingContext(),
                          feedback=feedback)


def _feedback():
    from qgis.core import QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []

        def reportError(self, error, fatalError=False):  # noqa: N802, N803
            self.errors.append(error)

    return Recording()


def _params(sample_data, tmp_path):
    return {"INPUT": sample_data["scene"], "MODEL": sample_data["model"],
            "ROI": ROI_OIL.format(**sample_data), "CLASS": "oil", **SMALL,
            "EXCITATION": str(tmp_path / "e.tif"), "INHIBITION": str(tmp_path / "i.tif")}


def test_a_bug_in_the_engine_reaches_the_log_as_a_traceback(provider, sample_data,  # noqa: F811
                                                            tmp_path, monkeypatch):
    from qgis.core import QgsApplication, QgsProcessingException

    import seg_explainer.core.explain as engine

    def broken(*args, **kwargs):
        return {}["a bug"]

    monkeypatch.setattr(engine, "explain_region", broken)
    logged = []

    def listen(text, tag, level):
        logged.append(text)

    QgsApplication.messageLog().messageReceived.connect(listen)
    feedback = _feedback()
    try:
        with pytest.raises(QgsProcessingException) as raised:
            _run("explain_rise", _params(sample_data, tmp_path), feedback)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(listen)
    text = "\n".join(feedback.errors + logged + [str(raised.value)])
    assert "Traceback" in text and "KeyError: 'a bug'" in text and "model failed" not in text
    assert not list(tmp_path.iterdir())


def test_a_user_error_is_a_message_without_traceback(provider, sample_data,  # noqa: F811
                                                     tmp_path):
    from qgis.core import QgsProcessingException

    feedback = _feedback()
    with pytest.raises(QgsProcessingException) as raised:
        _run("explain_rise", dict(_params(sample_data, tmp_path), BANDS=[1, 1]), feedback)
    text = "\n".join([str(raised.value), *feedback.errors])
    assert "BANDS: the model takes 1 channel(s) but 2 band(s)" in text
    assert "Traceback" not in text
    assert not list(tmp_path.iterdir())


def test_the_dock_says_a_bug_is_a_bug_and_logs_the_traceback(qgis_app):
    from qgis.core import QgsApplication

    from seg_explainer.ui.task import BUG_MESSAGE, ExplainRun
    from seg_explainer.ui.text import LOG_TAG

    logged = []

    def listen(text, tag, level):
        logged.append((tag, text))

    QgsApplication.messageLog().messageReceived.connect(listen)
    run = ExplainRun("segexplainer:explain_rise", {}, "group", "/x.tif")
    trace = "Traceback (most recent call last):\n  File ...\nKeyError: 'a bug'\n"
    try:
        assert run._failure([trace]) == BUG_MESSAGE and run.bug
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(listen)
    assert "bug in the plugin, please report it" in BUG_MESSAGE
    assert any(tag == LOG_TAG and "KeyError: 'a bug'" in text for tag, text in logged)
    user = ExplainRun("segexplainer:explain_rise", {}, "group", "/x.tif")
    assert user._failure(["BANDS: choose 1 band."]) == "BANDS: choose 1 band." and not user.bug
