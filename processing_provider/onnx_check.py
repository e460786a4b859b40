"""Checks of an ONNX file done before onnxruntime is given it: the model is data, and stays so.

onnxruntime reads a tensor's *external data* from whatever path the model names, inside its
folder or not (``../../home/me/.ssh/id_rsa``, ``/etc/shadow``). This module reads just enough
of the ONNX protobuf to list those paths, and :func:`check_model_file` refuses any that leaves
the model's folder, so a model file can only make the plugin read files that were shipped
with it. Nothing here imports onnx, protobuf, QGIS or Qt; no part of the file is executed.

The reader walks ModelProto -> graph (and functions) -> nodes -> attributes -> sub-graphs and
tensors, skipping every other field by its length; tensor payloads are never copied.
"""

import mmap
import os

# Field numbers of onnx.proto (onnx 1.17; they never change between versions).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_FUNCTION_NODE = 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 22, 23
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1
#: Deepest nesting of sub-graphs read (a loop body inside an If inside a Loop...).
MAX_NESTING = 64


class ModelFileError(ValueError):
    """The model file refers to data it must not read; the message says what to do."""


class _Malformed(Exception):
    """The bytes are not a well-formed protobuf (onnxruntime will say so in its own words)."""


def _varint(buf, pos, end):
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf, start, end):
    """Yield ``(field number, wire type, value)``; value is an int, or (start, end) of bytes."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + length), pos + length
        else:
            raise _Malformed
        if pos > end:
            raise _Malformed
        yield number, wire, value


def _tensor_locations(buf, span, out):
    start, end = span
    external, location = False, None
    for number, wire, value in _fields(buf, start, end):
        if number == _TENSOR_DATA_LOCATION and wire == 0:
            external = value == _EXTERNAL
        elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
            key = text = None
            for n, w, v in _fields(buf, *value):
                if w == 2 and n in (_ENTRY_KEY, _ENTRY_VALUE):
                    s = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
                    key, text = (s, text) if n == _ENTRY_KEY else (key, s)
            if key == "location":
                location = text
    if external or location is not None:
        out.append(location or "")


def _sparse_locations(buf, span, out):
    for number, wire, value in _fields(buf, *span):
        if wire == 2 and number in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor_locations(buf, value, out)


def _node_locations(buf, span, out, depth):
    for number, wire, value in _fields(buf, *span):
        if number != _NODE_ATTRIBUTE or wire != 2:
            continue
        for n, w, v in _fields(buf, *value):
            if w != 2:
                continue
            if n in (_ATTR_T, _ATTR_TENSORS):
                _tensor_locations(buf, v, out)
            elif n in (_ATTR_G, _ATTR_GRAPHS):
                _graph_locations(buf, v, out, depth + 1)
            elif n in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                _sparse_locations(buf, v, out)


def _graph_locations(buf, span, out, depth):
    if depth > MAX_NESTING:
        raise ModelFileError(f"the model nests sub-graphs more than {MAX_NESTING} levels deep; "
                             "it is not a model this plugin runs")
    for number, wire, value in _fields(buf, *span):
        if wire != 2:
            continue
        if number == _GRAPH_NODE:
            _node_locations(buf, value, out, depth)
        elif number == _GRAPH_INITIALIZER:
            _tensor_locations(buf, value, out)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _sparse_locations(buf, value, out)


def external_data_locations(path):
    """The ``location`` of every tensor of ``path`` whose data lives in another file.

    Returns
    -------
    list of str or None
        One entry per external tensor ("" when it names no file); None when the file is not a
        well-formed protobuf (onnxruntime then reports the problem itself).
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            out = []
            try:
                for number, wire, value in _fields(buf, 0, size):
                    if wire != 2:
                        continue
                    if number == _MODEL_GRAPH:
                        _graph_locations(buf, value, out, 0)
                    elif number == _MODEL_FUNCTIONS:
                        for n, w, v in _fields(buf, *value):
                            if n == _FUNCTION_NODE and w == 2:
                                _node_locations(buf, v, out, 0)
            except (_Malformed, RecursionError):
                return None
            return out


def check_model_file(path):
    """Refuse a model whose tensors name data files outside its own folder, or missing ones.

    Raises
    ------
    ModelFileError
        With a message naming the offending location and what to do.
    """
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    locations = external_data_locations(path)
    for location in sorted(set(locations or [])):
        target = os.path.realpath(os.path.join(folder, location))
        inside = (location and not os.path.isabs(location) and "\\" not in location
                  and os.path.commonpath([folder, target]) == folder and target != folder)
        if not inside:
            raise ModelFileError(
                f"the model stores weights in '{location[:200]}', outside the model's own "
                "folder; a model may only use data files kept beside it. Re-export it with "
                "its external data in the same folder (or inside the .onnx file)")
        if not os.path.isfile(target):
            raise ModelFileError(
                f"the model's weights file '{location[:200]}' is missing from "
                f"{folder}; copy it there beside the .onnx file")
