"""Stopping a run from outside the engine: SIGINT and SIGTERM, without waiting for a long
model call to end.

:func:`stop_on_signals` (main thread only) turns SIGINT and SIGTERM into a stop request: a
watcher thread woken through :func:`signal.set_wakeup_fd` sets
``onnxruntime.RunOptions.terminate`` on every model call in progress (:func:`model_call`), so
a call stops within one operator even while the main thread is inside onnxruntime, and
:func:`~.batching.check_cancel` raises :class:`~.errors.ExplanationCancelled` at the next
batch. Outputs are then rolled back as for any cancellation. The previous handlers are put
back when the block ends.

Examples
--------
>>> with stop_on_signals() as stop:                         # doctest: +SKIP
...     explain_to_files(model, "scene.tif", roi, "oil", "shap", outputs=...)
>>> stop.signal        # "SIGTERM" if one arrived, else None      # doctest: +SKIP
"""

import contextlib
import signal
import socket
import threading

__all__ = ["StopRequest", "model_call", "request_stop", "requested", "stop_on_signals"]

_lock = threading.Lock()
_calls = set()         # RunOptions of the model calls in progress
_requested = None      # name of the signal (or reason) that asked the run to stop


def requested():
    """The signal's name (``"SIGINT"``...) when a stop was requested, else None."""
    return _requested


def request_stop(reason):
    """Ask the run to stop: every model call in progress is terminated (any thread)."""
    global _requested
    _requested = reason
    with _lock:
        calls = list(_calls)
    for options in calls:
        options.terminate = True


@contextlib.contextmanager
def model_call(options):
    """Register onnxruntime ``RunOptions`` for the duration of one ``session.run``."""
    with _lock:
        _calls.add(options)
    if _requested:
        options.terminate = True
    try:
        yield options
    finally:
        with _lock:
            _calls.discard(options)


class StopRequest:
    """What :func:`stop_on_signals` yields: ``signal`` is the name of the signal received."""

    signal = None


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, ``signals`` stop the run instead of killing the process.

    Outside the main thread (a QGIS task) nothing is installed: the block runs unchanged.
    """
    global _requested
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    _requested = None
    numbers = {int(s): signal.Signals(s).name for s in signals}
    reader, writer = socket.socketpair()
    writer.setblocking(False)

    def watch():
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for number in data:
                if number in numbers:
                    request_stop(numbers[number])

    def handler(number, _frame):
        request_stop(numbers.get(number, str(number)))

    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous = {}
    watcher = threading.Thread(target=watch, name="segx-signal-watcher", daemon=True)
    watcher.start()
    try:
        for number in numbers:
            previous[number] = signal.signal(number, handler)
        yield stop
    finally:
        for number, old in previous.items():
            signal.signal(number, old if old is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(previous_fd)
        writer.close()           # the watcher's recv returns b""
        watcher.join()
        reader.close()
        stop.signal = _requested
        _requested = None
