"""Checks of an ONNX file made before onnxruntime is given it: the model is data, and stays so.

onnxruntime reads a tensor's *external data* from whatever path the model names, inside its
folder or not (``../../home/me/.ssh/id_rsa``, ``/etc/shadow``), in the versions this plugin
supports (1.16 onwards; only recent ones check the path themselves). :func:`read_model_file`
therefore parses the file with the protobuf library and ONNX's own schema (``onnx.ModelProto``,
or its twin from :mod:`.onnx_schema` when ``onnx`` is not installed) - never by scanning bytes -
and walks *every* ``TensorProto`` the parsed model holds, wherever the schema allows one
(initializers, sparse initializers, ``Constant`` and other node attributes, sub-graphs of
``If``/``Loop``/``Scan`` at any depth, local functions, training graphs). Any tensor whose data
lives in another file must name a regular file inside the model's folder (symbolic links
resolved); anything else refuses the model. The data of those files is then read here and put
inside the model, the fields the schema does not know are discarded, and onnxruntime is given
the bytes of exactly the model that was checked, so it never parses the original file and
never opens a data file: there is no second reader whose view of the file could differ.

Custom operators (onnxruntime-extensions' ``PyOp``, a vendor's library) need a library that
the plugin never registers, so onnxruntime refuses such a model; :func:`custom_operator_message`
turns its refusal into a message naming the operator and the fix.

Nothing here executes any part of the file, imports onnxruntime, QGIS or Qt.
"""

import hashlib
import os
import re
from typing import NamedTuple

from .errors import ModelError

#: Deepest nesting of sub-graphs accepted (a loop body inside an If inside a Loop...).
MAX_NESTING = 64
#: Largest model file read: a protobuf message (an ONNX file) cannot exceed 2 GiB.
MAX_FILE_BYTES = 2 ** 31 - 1
#: Largest model once its external data is inside it (the same protobuf limit).
MAX_MODEL_BYTES = 2 ** 31 - 1
#: Operator domains onnxruntime itself provides (ONNX, ONNX-ML, Microsoft's contrib operators
#: and its internal layouts). An operator of any other domain, unless the model defines it as
#: a local function, needs a custom operator library.
STANDARD_DOMAINS = frozenset({
    "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
    "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
    "com.microsoft.dml", "com.ms.internal.nhwc", "org.pytorch.aten"})
# The keys onnxruntime knows in a tensor's external_data (it refuses any other).
_EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum"})
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# onnxruntime's words for an operator it does not have:
#   "<domain>:<op>(<version>) is not a registered function/op" (a domain it does not know),
#   "No Op registered for <op> with domain_version of <n>" (an unknown op of a known domain).
_UNREGISTERED = re.compile(r"([\w.]*):(\w+)\(-?\d+\) is not a registered function/op")
_NO_OP = re.compile(r"No Op registered for (\w+) with domain_version of (\d+)")
_REEXPORT = ("Re-export it with its external data in the same folder (or inside the .onnx "
             "file)")


class ModelFileError(ModelError):
    """The model file is not one the plugin may give onnxruntime; the message says what to do."""


class ModelFileScan(NamedTuple):
    """What the walk over a parsed ONNX model found.

    Attributes
    ----------
    external : list of str
        The ``location`` of every tensor whose data lives in another file ("" when it names
        none), in walk order.
    operators : frozenset of (str, str)
        ``(domain, op_type)`` of every node, sub-graphs and local functions included.
    functions : frozenset of (str, str)
        ``(domain, name)`` of the model's local functions (operators it defines itself).
    label_maps : frozenset of str
        Names of the main graph's outputs computed by ``ArgMax``/``ArgMin`` (through shape
        and type operators only): one class index per pixel, no class scores.
    """

    external: list
    operators: frozenset
    functions: frozenset
    label_maps: frozenset = frozenset()


class CheckedModelFile(NamedTuple):
    """A model file read and checked by :func:`read_model_file`.

    Attributes
    ----------
    data : bytes
        The serialised model for ``onnxruntime.InferenceSession``: every tensor's data inside
        it, fields the ONNX schema does not know removed.
    scan : ModelFileScan
    sha256 : str
        Hex SHA-256 of the file as read (identifies the model in outputs).
    """

    data: bytes
    scan: ModelFileScan
    sha256: str


def _not_onnx(path, why):
    return ModelFileError(
        f"{os.path.basename(path)} is not an ONNX model ({why}); export the model to ONNX "
        "(opset <= 20) and choose the .onnx file")


def _repeated(field):
    flag = getattr(field, "is_repeated", None)  # protobuf >= 5.28; ``label`` went in 7
    return flag if flag is not None else field.label == field.LABEL_REPEATED


def _walk(message, found, depth=0):
    """Visit every message field of ``message``, recursively, by the schema's descriptors.

    ``found`` collects ``tensors`` (TensorProto), ``operators`` and ``functions``. Generic on
    purpose: a tensor is found wherever the schema can hold one.
    """
    name = message.DESCRIPTOR.full_name
    if name == "onnx.TensorProto":
        found["tensors"].append(message)
        return  # a TensorProto holds no other tensor
    if name == "onnx.GraphProto":
        depth += 1
        if depth > MAX_NESTING:
            raise ModelFileError(f"the model nests sub-graphs more than {MAX_NESTING} levels "
                                 "deep; it is not a model this plugin runs")
    elif name == "onnx.NodeProto":
        found["operators"].add((message.domain, message.op_type))
    elif name == "onnx.FunctionProto":
        found["functions"].add((message.domain, message.name))
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if _repeated(field):
            if field.message_type.GetOptions().map_entry:
                continue  # no map of the ONNX schema holds a message
            for item in value:
                _walk(item, found, depth)
        else:
            _walk(value, found, depth)


# Operators that pass a label map on unchanged (its values stay class indices).
_PASS_THROUGH = frozenset({"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Transpose",
                           "Flatten", "Expand", "Slice", "Resize", "Upsample"})


def label_map_outputs(graph):
    """Names of ``graph``'s outputs that are class indices (an ArgMax/ArgMin result)."""
    producer = {out: node for node in graph.node for out in node.output}
    labels = set()
    for output in graph.output:
        name, seen = output.name, set()
        while name in producer and name not in seen:
            seen.add(name)
            node = producer[name]
            if node.domain in ("", "ai.onnx") and node.op_type in ("ArgMax", "ArgMin"):
                labels.add(output.name)
                break
            if node.domain not in ("", "ai.onnx") or node.op_type not in _PASS_THROUGH \
                    or not node.input:
                break
            name = node.input[0]
    return frozenset(labels)


def _external_entries(tensor):
    """``{key: value}`` of a tensor's external_data; refuses repeated and unknown keys."""
    entries = {}
    for entry in tensor.external_data:
        if entry.key not in _EXTERNAL_KEYS:
            raise ModelFileError(
                f"the tensor '{tensor.name[:100]}' has an unknown external-data key "
                f"'{entry.key[:100]}'; the model is damaged or was not written by an ONNX "
                f"exporter. {_REEXPORT}")
        if entry.key in entries:
            raise ModelFileError(
                f"the tensor '{tensor.name[:100]}' names its external-data '{entry.key}' more "
                f"than once; the model is damaged or was not written by an ONNX exporter. "
                f"{_REEXPORT}")
        entries[entry.key] = entry.value
    return entries


def _inside(folder, location):
    """The real path of ``location`` if it is a file name inside ``folder``, else None.

    Checked on the text first (no absolute path, no drive, no backslash, no "..", no empty
    part, not onnxruntime's in-memory address ``*/_ORT_MEM_ADDR_/*``), so a refused location
    is never even looked up; then with symbolic links resolved.
    """
    parts = location.split("/")
    if (not location or os.path.isabs(location) or "\\" in location or ":" in location
            or "\0" in location or "_ORT_MEM_ADDR_" in location
            or any(p in ("", ".", "..") for p in parts)):
        return None
    target = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, target]) != folder or target == folder:
        return None
    return target


def _int_entry(tensor, entries, key):
    text = entries.get(key)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise ModelFileError(
            f"the tensor '{tensor.name[:100]}' has the external-data {key} '{text[:40]}', not a "
            f"byte count; the model is damaged. {_REEXPORT}")
    return int(text)


def _read_external(tensor, entries, target, location):
    """The bytes of a tensor's external data, read from ``target`` (a real path)."""
    offset = _int_entry(tensor, entries, "offset") or 0
    length = _int_entry(tensor, entries, "length")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(target, flags)
    try:
        size = os.fstat(fd).st_size
        if length is None:
            length = max(0, size - offset)
        if offset + length > size:
            raise ModelFileError(
                f"the model's weights file '{location[:200]}' holds {size} bytes but the tensor "
                f"'{tensor.name[:100]}' needs bytes {offset} to {offset + length}; the file is "
                f"truncated or not the one exported with the model. Copy it again beside the "
                f".onnx file")
        chunks, done = [], 0
        while done < length:
            chunk = os.pread(fd, min(length - done, 1 << 26), offset + done) \
                if hasattr(os, "pread") else _seek_read(fd, offset + done, length - done)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _seek_read(fd, offset, n):
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, min(n, 1 << 26))


def _parse(path, data, prefer_onnx):
    from .onnx_schema import model_proto_class

    try:
        model_class = model_proto_class(prefer_onnx)
    except ImportError:
        raise ModelError("neither the Python package 'onnx' nor 'protobuf' can be imported, so "
                         "the model file cannot be checked before it is run; install "
                         "'onnxruntime' (which brings 'protobuf') into QGIS's Python") from None
    model = model_class()
    try:
        model.ParseFromString(data)
    except RecursionError:
        raise _not_onnx(path, "its messages nest too deeply") from None
    except Exception as exc:  # noqa: BLE001 (protobuf's DecodeError and its relatives)
        raise _not_onnx(path, f"not a well-formed ONNX protobuf: {str(exc)[:200]}") from None
    return model


def read_model_file(path, *, prefer_onnx=True):
    """Read, parse and check the ONNX file ``path``; the bytes to give onnxruntime.

    Parameters
    ----------
    path : str or os.PathLike
    prefer_onnx : bool
        Parse with ``onnx.ModelProto`` when ``onnx`` is installed (default), else always with
        the schema kept in :mod:`.onnx_schema` (the tests run both).

    Returns
    -------
    CheckedModelFile

    Raises
    ------
    ModelFileError
        The file is not a well-formed ONNX protobuf; a tensor's external data is outside the
        model's folder (absolute path, "..", a symbolic link leading out), missing, shorter
        than the model says, or described by unknown or repeated keys; sub-graphs nest more
        than :data:`MAX_NESTING` levels; the model is larger than 2 GiB. The message names the
        problem and the fix.
    OSError
        When the file (or a data file inside its folder) cannot be read.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.realpath(os.path.dirname(path))
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise _not_onnx(path, f"{size / 2 ** 30:.1f} GiB, more than a single ONNX file can "
                                  "hold; large models keep their weights in a data file")
        data = fh.read()
    if not data:
        raise _not_onnx(path, "the file is empty")
    sha256 = hashlib.sha256(data).hexdigest()
    model = _parse(path, data, prefer_onnx)
    del data
    found = {"tensors": [], "operators": set(), "functions": set()}
    try:
        _walk(model, found)
    except RecursionError:
        raise _not_onnx(path, "its messages nest too deeply") from None
    locations = []
    pending = []
    for tensor in found["tensors"]:
        if tensor.data_location != _EXTERNAL and not len(tensor.external_data):
            continue
        entries = _external_entries(tensor)
        location = entries.get("location", "")
        locations.append(location)
        if tensor.data_location != _EXTERNAL or not location:
            raise ModelFileError(
                f"the tensor '{tensor.name[:100]}' is half described as stored in another "
                f"file (data_location and external_data disagree, or no location); the model "
                f"is damaged or was not written by an ONNX exporter. {_REEXPORT}")
        target = _inside(folder, location)
        if target is None:
            raise ModelFileError(
                f"the model stores weights in '{location[:200]}', outside the model's own "
                f"folder; a model may only use data files kept beside it. {_REEXPORT}")
        if not os.path.isfile(target):
            raise ModelFileError(
                f"the model's weights file '{location[:200]}' is missing from "
                f"{folder}; copy it there beside the .onnx file")
        pending.append((tensor, entries, target, location))
    # Every location is checked before any data file is opened.
    total = model.ByteSize()
    for tensor, entries, target, location in pending:
        raw = _read_external(tensor, entries, target, location)
        total += len(raw)
        if total > MAX_MODEL_BYTES:
            raise ModelFileError(
                "the model with its external weights is larger than 2 GiB, which this plugin "
                "cannot pass to onnxruntime in one piece; use a smaller model (e.g. exported "
                "in float16)")
        tensor.ClearField("external_data")
        tensor.ClearField("data_location")
        tensor.raw_data = raw
    model.DiscardUnknownFields()
    scan = ModelFileScan(locations, frozenset(found["operators"]), frozenset(found["functions"]),
                         label_map_outputs(model.graph))
    try:
        serialised = model.SerializeToString()
    except Exception:  # noqa: BLE001 (protobuf refuses messages over 2 GiB)
        raise ModelFileError(
            "the model with its external weights is larger than 2 GiB, which this plugin "
            "cannot pass to onnxruntime in one piece; use a smaller model") from None
    return CheckedModelFile(serialised, scan, sha256)


def scan_model_file(path):
    """The external-data locations and operators of the ONNX file ``path`` (nothing checked).

    Returns
    -------
    ModelFileScan or None
        None when the file is empty or not a well-formed ONNX protobuf.

    Raises
    ------
    ModelFileError
        When sub-graphs nest more than :data:`MAX_NESTING` levels deep.
    OSError
        When the file cannot be read.
    """
    path = os.path.abspath(os.fspath(path))
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size > MAX_FILE_BYTES:
            return None
        data = fh.read()
    if not data:
        return None
    try:
        model = _parse(path, data, True)
        found = {"tensors": [], "operators": set(), "functions": set()}
        _walk(model, found)
    except (RecursionError, ModelFileError) as exc:
        if isinstance(exc, ModelFileError) and "nests sub-graphs" in str(exc):
            raise
        return None
    external = [dict((e.key, e.value) for e in t.external_data).get("location", "")
                for t in found["tensors"]
                if t.data_location == _EXTERNAL or len(t.external_data)]
    return ModelFileScan(external, frozenset(found["operators"]), frozenset(found["functions"]),
                         label_map_outputs(model.graph))


def check_model_file(path):
    """Refuse a model whose tensors name data files outside its own folder, or missing ones.

    The same checks as :func:`read_model_file`, for callers that only want the verdict.

    Raises
    ------
    ModelFileError
        With a message naming the offending location (or problem) and what to do.
    OSError
        When the file cannot be read.
    """
    read_model_file(path)


def custom_operators(scan):
    """``(domain, op_type)`` of the operators of ``scan`` that need a custom operator library.

    Those of a domain onnxruntime does not provide (:data:`STANDARD_DOMAINS`) that the model
    does not define as a local function; sorted.
    """
    if scan is None:
        return []
    return sorted(op for op in scan.operators
                  if op[0] not in STANDARD_DOMAINS and op not in scan.functions)


def custom_operator_message(path, error_text, scan=None):
    """The message for a model onnxruntime refused because of a custom operator, else None.

    Parameters
    ----------
    path : str
        The model file (read again to name its custom operators unless ``scan`` is given).
    error_text : str
        onnxruntime's own message when it refused to load the model.
    scan : ModelFileScan, optional
        The model's scan, when already made.
    """
    if scan is None:
        try:
            scan = scan_model_file(path)
        except (OSError, ModelError):
            scan = None
    operators = custom_operators(scan)
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
