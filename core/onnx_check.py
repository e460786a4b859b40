"""Checks of an ONNX file made before onnxruntime is given it: the model is data, and stays so.

onnxruntime reads a tensor's *external data* from whatever path the model names, inside its
folder or not (``../../home/me/.ssh/id_rsa``, ``/etc/shadow``). :func:`check_model_file` reads
just enough of the ONNX protobuf to list those paths and refuses any that leaves the model's
folder, so a model file can only make the plugin read files that were shipped with it.

Custom operators (onnxruntime-extensions' ``PyOp``, a vendor's library) need a library that
the plugin never registers, so onnxruntime refuses such a model; :func:`custom_operator_message`
turns its refusal into a message naming the operator and the fix.

Nothing here imports onnx, protobuf, onnxruntime, QGIS or Qt, and no part of the file is
executed. The reader walks ModelProto -> graph (and local functions) -> nodes -> attributes ->
sub-graphs and tensors, skipping every other field by its length; tensor payloads are never
copied.
"""

import mmap
import os
import re
from typing import NamedTuple

from .errors import ModelError

# Field numbers of onnx.proto (onnx 1.17; they never change between versions).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_FUNCTION_NAME, _FUNCTION_NODE, _FUNCTION_DOMAIN = 1, 7, 10
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 22, 23
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1
#: Deepest nesting of sub-graphs read (a loop body inside an If inside a Loop...).
MAX_NESTING = 64
#: Operator domains onnxruntime itself provides (ONNX, ONNX-ML, Microsoft's contrib operators
#: and its internal layouts). An operator of any other domain, unless the model defines it as
#: a local function, needs a custom operator library.
STANDARD_DOMAINS = frozenset({
    "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
    "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
    "com.microsoft.dml", "com.ms.internal.nhwc", "org.pytorch.aten"})
# onnxruntime's words for an operator it does not have:
#   "<domain>:<op>(<version>) is not a registered function/op" (a domain it does not know),
#   "No Op registered for <op> with domain_version of <n>" (an unknown op of a known domain).
_UNREGISTERED = re.compile(r"([\w.]*):(\w+)\(-?\d+\) is not a registered function/op")
_NO_OP = re.compile(r"No Op registered for (\w+) with domain_version of (\d+)")


class ModelFileError(ModelError):
    """The model file refers to data it must not read; the message says what to do."""


class ModelFileScan(NamedTuple):
    """What :func:`scan_model_file` found in an ONNX file.

    Attributes
    ----------
    external : list of str
        The ``location`` of every tensor whose data lives in another file ("" when it names
        none), in file order.
    operators : frozenset of (str, str)
        ``(domain, op_type)`` of every node, sub-graphs and local functions included.
    functions : frozenset of (str, str)
        ``(domain, name)`` of the model's local functions (operators it defines itself).
    """

    external: list
    operators: frozenset
    functions: frozenset


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


def _text(buf, span):
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


class _Scanner:
    """One walk over a serialised ModelProto, collecting external data and operators."""

    def __init__(self, buf):
        self.buf = buf
        self.external = []
        self.operators = set()
        self.functions = set()

    def model(self, size):
        for number, wire, value in _fields(self.buf, 0, size):
            if wire != 2:
                continue
            if number == _MODEL_GRAPH:
                self.graph(value, 0)
            elif number == _MODEL_FUNCTIONS:
                self.function(value)

    def function(self, span):
        name = domain = ""
        for number, wire, value in _fields(self.buf, *span):
            if wire != 2:
                continue
            if number == _FUNCTION_NODE:
                self.node(value, 0)
            elif number == _FUNCTION_NAME:
                name = _text(self.buf, value)
            elif number == _FUNCTION_DOMAIN:
                domain = _text(self.buf, value)
        self.functions.add((domain, name))

    def graph(self, span, depth):
        if depth > MAX_NESTING:
            raise ModelFileError(f"the model nests sub-graphs more than {MAX_NESTING} levels "
                                 "deep; it is not a model this plugin runs")
        for number, wire, value in _fields(self.buf, *span):
            if wire != 2:
                continue
            if number == _GRAPH_NODE:
                self.node(value, depth)
            elif number == _GRAPH_INITIALIZER:
                self.tensor(value)
            elif number == _GRAPH_SPARSE_INITIALIZER:
                self.sparse(value)

    def node(self, span, depth):
        op_type = domain = ""
        for number, wire, value in _fields(self.buf, *span):
            if wire != 2:
                continue
            if number == _NODE_OP_TYPE:
                op_type = _text(self.buf, value)
            elif number == _NODE_DOMAIN:
                domain = _text(self.buf, value)
            elif number == _NODE_ATTRIBUTE:
                self.attribute(value, depth)
        self.operators.add((domain, op_type))

    def attribute(self, span, depth):
        for number, wire, value in _fields(self.buf, *span):
            if wire != 2:
                continue
            if number in (_ATTR_T, _ATTR_TENSORS):
                self.tensor(value)
            elif number in (_ATTR_G, _ATTR_GRAPHS):
                self.graph(value, depth + 1)
            elif number in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                self.sparse(value)

    def sparse(self, span):
        for number, wire, value in _fields(self.buf, *span):
            if wire == 2 and number in (_SPARSE_VALUES, _SPARSE_INDICES):
                self.tensor(value)

    def tensor(self, span):
        external, location = False, None
        for number, wire, value in _fields(self.buf, *span):
            if number == _TENSOR_DATA_LOCATION and wire == 0:
                external = value == _EXTERNAL
            elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
                key = text = None
                for n, w, v in _fields(self.buf, *value):
                    if w == 2 and n == _ENTRY_KEY:
                        key = _text(self.buf, v)
                    elif w == 2 and n == _ENTRY_VALUE:
                        text = _text(self.buf, v)
                if key == "location":
                    location = text
        if external or location is not None:
            self.external.append(location or "")


def scan_model_file(path):
    """Read the external-data locations and the operators of the ONNX file ``path``.

    Returns
    -------
    ModelFileScan or None
        None when the file is empty or not a well-formed protobuf (onnxruntime then reports
        the problem in its own words).

    Raises
    ------
    ModelFileError
        When sub-graphs nest more than :data:`MAX_NESTING` levels deep.
    OSError
        When the file cannot be read.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            scanner = _Scanner(buf)
            try:
                scanner.model(size)
            except (_Malformed, RecursionError):
                return None
            return ModelFileScan(scanner.external, frozenset(scanner.operators),
                                 frozenset(scanner.functions))


def check_model_file(path):
    """Refuse a model whose tensors name data files outside its own folder, or missing ones.

    Raises
    ------
    ModelFileError
        With a message naming the offending location and what to do.
    OSError
        When the file cannot be read.
    """
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    scan = scan_model_file(path)
    for location in sorted(set(scan.external if scan else [])):
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


def custom_operators(scan):
    """``(domain, op_type)`` of the operators of ``scan`` that need a custom operator library.

    Those of a domain onnxruntime does not provide (:data:`STANDARD_DOMAINS`) that the model
    does not define as a local function; sorted.
    """
    if scan is None:
        return []
    return sorted(op for op in scan.operators
                  if op[0] not in STANDARD_DOMAINS and op not in scan.functions)


def custom_operator_message(path, error_text):
    """The message for a model onnxruntime refused because of a custom operator, else None.

    Parameters
    ----------
    path : str
        The model file (read again to name its custom operators).
    error_text : str
        onnxruntime's own message when it refused to load the model.
    """
    try:
        operators = custom_operators(scan_model_file(path))
    except (OSError, ModelFileError):
        operators = []
    if not operators:
        found = _UNREGISTERED.search(error_text)
        if found:
            operators = [found.groups()]
        else:
            found = _NO_OP.search(error_text)
            if not found:
                return None
            return (f"the model uses the operator '{found.group(1)}', which is not an ONNX "
                    f"operator of opset {found.group(2)} that onnxruntime provides (a custom "
                    "operator, or a misspelt one); custom operator libraries are never loaded, "
                    "so re-export the model with standard ONNX operators")
    names = ", ".join(f"'{op[:100]}' of domain '{domain[:100] or 'ai.onnx'}'"
                      for domain, op in operators[:3])
    more = f" (and {len(operators) - 3} more)" if len(operators) > 3 else ""
    which = "operator" if len(operators) == 1 else "operators"
    return (f"the model uses the {which} {names}{more}, which onnxruntime does not provide "
            "(a custom operator); custom operator libraries are never loaded, so re-export "
            "the model with standard ONNX operators")
