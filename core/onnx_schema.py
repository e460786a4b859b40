"""ONNX's own protobuf schema, for reading model files when the ``onnx`` package is absent.

The plugin needs only ``onnxruntime`` at run time, and ``onnxruntime`` brings ``protobuf``
(not ``onnx``). :func:`model_proto_class` returns ``onnx.ModelProto`` when ``onnx`` is
installed, else the same message class built from ONNX's schema kept here (the
``FileDescriptorProto`` of ``onnx/onnx-ml.proto`` from onnx 1.23.2, SHA-256
9624effbf57d485ebd8db5eb96c2aaf5f4fbaea486f626843f21a358d7315881, in a private descriptor pool
so it never clashes with an ``onnx`` imported later). Either way the file is parsed by the
protobuf library with ONNX's schema, exactly as ``onnx.load`` parses it.

Regenerate with::

    import base64, onnx.onnx_ml_pb2 as p
    print(base64.b64encode(p.DESCRIPTOR.serialized_pb).decode())
"""

import base64
import functools

__all__ = ["model_proto_class"]

_ONNX_ML_PROTO = (
    "ChJvbm54L29ubngtbWwucHJvdG8SBG9ubngi2wUKDkF0dHJpYnV0ZVByb3RvEgwKBG5hbWUYASABKAkSFQoNcmVmX2F0"
    "dHJfbmFtZRgVIAEoCRISCgpkb2Nfc3RyaW5nGA0gASgJEjAKBHR5cGUYFCABKA4yIi5vbm54LkF0dHJpYnV0ZVByb3Rv"
    "LkF0dHJpYnV0ZVR5cGUSCQoBZhgCIAEoAhIJCgFpGAMgASgDEgkKAXMYBCABKAwSHAoBdBgFIAEoCzIRLm9ubnguVGVu"
    "c29yUHJvdG8SGwoBZxgGIAEoCzIQLm9ubnguR3JhcGhQcm90bxIuCg1zcGFyc2VfdGVuc29yGBYgASgLMhcub25ueC5T"
    "cGFyc2VUZW5zb3JQcm90bxIbCgJ0cBgOIAEoCzIPLm9ubnguVHlwZVByb3RvEg4KBmZsb2F0cxgHIAMoAhIMCgRpbnRz"
    "GAggAygDEg8KB3N0cmluZ3MYCSADKAwSIgoHdGVuc29ycxgKIAMoCzIRLm9ubnguVGVuc29yUHJvdG8SIAoGZ3JhcGhz"
    "GAsgAygLMhAub25ueC5HcmFwaFByb3RvEi8KDnNwYXJzZV90ZW5zb3JzGBcgAygLMhcub25ueC5TcGFyc2VUZW5zb3JQ"
    "cm90bxIkCgt0eXBlX3Byb3RvcxgPIAMoCzIPLm9ubnguVHlwZVByb3RvItkBCg1BdHRyaWJ1dGVUeXBlEg0KCVVOREVG"
    "SU5FRBAAEgkKBUZMT0FUEAESBwoDSU5UEAISCgoGU1RSSU5HEAMSCgoGVEVOU09SEAQSCQoFR1JBUEgQBRIRCg1TUEFS"
    "U0VfVEVOU09SEAsSDgoKVFlQRV9QUk9UTxANEgoKBkZMT0FUUxAGEggKBElOVFMQBxILCgdTVFJJTkdTEAgSCwoHVEVO"
    "U09SUxAJEgoKBkdSQVBIUxAKEhIKDlNQQVJTRV9URU5TT1JTEAwSDwoLVFlQRV9QUk9UT1MQDkoECAwQDUoECBAQFFIB"
    "diKHAQoOVmFsdWVJbmZvUHJvdG8SDAoEbmFtZRgBIAEoCRIdCgR0eXBlGAIgASgLMg8ub25ueC5UeXBlUHJvdG8SEgoK"
    "ZG9jX3N0cmluZxgDIAEoCRI0Cg5tZXRhZGF0YV9wcm9wcxgEIAMoCzIcLm9ubnguU3RyaW5nU3RyaW5nRW50cnlQcm90"
    "byKhAgoJTm9kZVByb3RvEg0KBWlucHV0GAEgAygJEg4KBm91dHB1dBgCIAMoCRIMCgRuYW1lGAMgASgJEg8KB29wX3R5"
    "cGUYBCABKAkSDgoGZG9tYWluGAcgASgJEhAKCG92ZXJsb2FkGAggASgJEicKCWF0dHJpYnV0ZRgFIAMoCzIULm9ubngu"
    "QXR0cmlidXRlUHJvdG8SEgoKZG9jX3N0cmluZxgGIAEoCRI0Cg5tZXRhZGF0YV9wcm9wcxgJIAMoCzIcLm9ubnguU3Ry"
    "aW5nU3RyaW5nRW50cnlQcm90bxJBChVkZXZpY2VfY29uZmlndXJhdGlvbnMYCiADKAsyIi5vbm54Lk5vZGVEZXZpY2VD"
    "b25maWd1cmF0aW9uUHJvdG8iMgoUSW50SW50TGlzdEVudHJ5UHJvdG8SCwoDa2V5GAEgASgDEg0KBXZhbHVlGAIgAygD"
    "IoABChxOb2RlRGV2aWNlQ29uZmlndXJhdGlvblByb3RvEhgKEGNvbmZpZ3VyYXRpb25faWQYASABKAkSLgoNc2hhcmRp"
    "bmdfc3BlYxgCIAMoCzIXLm9ubnguU2hhcmRpbmdTcGVjUHJvdG8SFgoOcGlwZWxpbmVfc3RhZ2UYAyABKAUiowEKEVNo"
    "YXJkaW5nU3BlY1Byb3RvEhMKC3RlbnNvcl9uYW1lGAEgASgJEg4KBmRldmljZRgCIAMoAxI9ChlpbmRleF90b19kZXZp"
    "Y2VfZ3JvdXBfbWFwGAMgAygLMhoub25ueC5JbnRJbnRMaXN0RW50cnlQcm90bxIqCgtzaGFyZGVkX2RpbRgEIAMoCzIV"
    "Lm9ubnguU2hhcmRlZERpbVByb3RvIlUKD1NoYXJkZWREaW1Qcm90bxIMCgRheGlzGAEgASgDEjQKD3NpbXBsZV9zaGFy"
    "ZGluZxgCIAMoCzIbLm9ubnguU2ltcGxlU2hhcmRlZERpbVByb3RvIlwKFVNpbXBsZVNoYXJkZWREaW1Qcm90bxITCglk"
    "aW1fdmFsdWUYASABKANIABITCglkaW1fcGFyYW0YAiABKAlIABISCgpudW1fc2hhcmRzGAMgASgDQgUKA2RpbSLWAQoR"
    "VHJhaW5pbmdJbmZvUHJvdG8SKAoOaW5pdGlhbGl6YXRpb24YASABKAsyEC5vbm54LkdyYXBoUHJvdG8SIwoJYWxnb3Jp"
    "dGhtGAIgASgLMhAub25ueC5HcmFwaFByb3RvEjwKFmluaXRpYWxpemF0aW9uX2JpbmRpbmcYAyADKAsyHC5vbm54LlN0"
    "cmluZ1N0cmluZ0VudHJ5UHJvdG8SNAoOdXBkYXRlX2JpbmRpbmcYBCADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0VudHJ5"
    "UHJvdG8iogMKCk1vZGVsUHJvdG8SEgoKaXJfdmVyc2lvbhgBIAEoAxIuCgxvcHNldF9pbXBvcnQYCCADKAsyGC5vbm54"
    "Lk9wZXJhdG9yU2V0SWRQcm90bxIVCg1wcm9kdWNlcl9uYW1lGAIgASgJEhgKEHByb2R1Y2VyX3ZlcnNpb24YAyABKAkS"
    "DgoGZG9tYWluGAQgASgJEhUKDW1vZGVsX3ZlcnNpb24YBSABKAMSEgoKZG9jX3N0cmluZxgGIAEoCRIfCgVncmFwaBgH"
    "IAEoCzIQLm9ubnguR3JhcGhQcm90bxI0Cg5tZXRhZGF0YV9wcm9wcxgOIAMoCzIcLm9ubnguU3RyaW5nU3RyaW5nRW50"
    "cnlQcm90bxIuCg10cmFpbmluZ19pbmZvGBQgAygLMhcub25ueC5UcmFpbmluZ0luZm9Qcm90bxImCglmdW5jdGlvbnMY"
    "GSADKAsyEy5vbm54LkZ1bmN0aW9uUHJvdG8SNQoNY29uZmlndXJhdGlvbhgaIAMoCzIeLm9ubnguRGV2aWNlQ29uZmln"
    "dXJhdGlvblByb3RvIk0KGERldmljZUNvbmZpZ3VyYXRpb25Qcm90bxIMCgRuYW1lGAEgASgJEhMKC251bV9kZXZpY2Vz"
    "GAIgASgFEg4KBmRldmljZRgDIAMoCSI0ChZTdHJpbmdTdHJpbmdFbnRyeVByb3RvEgsKA2tleRgBIAEoCRINCgV2YWx1"
    "ZRgCIAEoCSJrChBUZW5zb3JBbm5vdGF0aW9uEhMKC3RlbnNvcl9uYW1lGAEgASgJEkIKHHF1YW50X3BhcmFtZXRlcl90"
    "ZW5zb3JfbmFtZXMYAiADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0VudHJ5UHJvdG8i1AMKCkdyYXBoUHJvdG8SHQoEbm9k"
    "ZRgBIAMoCzIPLm9ubnguTm9kZVByb3RvEgwKBG5hbWUYAiABKAkSJgoLaW5pdGlhbGl6ZXIYBSADKAsyES5vbm54LlRl"
    "bnNvclByb3RvEjMKEnNwYXJzZV9pbml0aWFsaXplchgPIAMoCzIXLm9ubnguU3BhcnNlVGVuc29yUHJvdG8SEgoKZG9j"
    "X3N0cmluZxgKIAEoCRIjCgVpbnB1dBgLIAMoCzIULm9ubnguVmFsdWVJbmZvUHJvdG8SJAoGb3V0cHV0GAwgAygLMhQu"
    "b25ueC5WYWx1ZUluZm9Qcm90bxIoCgp2YWx1ZV9pbmZvGA0gAygLMhQub25ueC5WYWx1ZUluZm9Qcm90bxI3ChdxdWFu"
    "dGl6YXRpb25fYW5ub3RhdGlvbhgOIAMoCzIWLm9ubnguVGVuc29yQW5ub3RhdGlvbhI0Cg5tZXRhZGF0YV9wcm9wcxgQ"
    "IAMoCzIcLm9ubnguU3RyaW5nU3RyaW5nRW50cnlQcm90b0oECAMQBEoECAQQBUoECAYQClIKaXJfdmVyc2lvblIQcHJv"
    "ZHVjZXJfdmVyc2lvblIMcHJvZHVjZXJfdGFnUgZkb21haW4iogcKC1RlbnNvclByb3RvEgwKBGRpbXMYASADKAMSEQoJ"
    "ZGF0YV90eXBlGAIgASgFEioKB3NlZ21lbnQYAyABKAsyGS5vbm54LlRlbnNvclByb3RvLlNlZ21lbnQSFgoKZmxvYXRf"
    "ZGF0YRgEIAMoAkICEAESFgoKaW50MzJfZGF0YRgFIAMoBUICEAESEwoLc3RyaW5nX2RhdGEYBiADKAwSFgoKaW50NjRf"
    "ZGF0YRgHIAMoA0ICEAESDAoEbmFtZRgIIAEoCRISCgpkb2Nfc3RyaW5nGAwgASgJEhAKCHJhd19kYXRhGAkgASgMEjMK"
    "DWV4dGVybmFsX2RhdGEYDSADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0VudHJ5UHJvdG8SNQoNZGF0YV9sb2NhdGlvbhgO"
    "IAEoDjIeLm9ubnguVGVuc29yUHJvdG8uRGF0YUxvY2F0aW9uEhcKC2RvdWJsZV9kYXRhGAogAygBQgIQARIXCgt1aW50"
    "NjRfZGF0YRgLIAMoBEICEAESNAoObWV0YWRhdGFfcHJvcHMYECADKAsyHC5vbm54LlN0cmluZ1N0cmluZ0VudHJ5UHJv"
    "dG8aJQoHU2VnbWVudBINCgViZWdpbhgBIAEoAxILCgNlbmQYAiABKAMijgMKCERhdGFUeXBlEg0KCVVOREVGSU5FRBAA"
    "EgkKBUZMT0FUEAESCQoFVUlOVDgQAhIICgRJTlQ4EAMSCgoGVUlOVDE2EAQSCQoFSU5UMTYQBRIJCgVJTlQzMhAGEgkK"
    "BUlOVDY0EAcSCgoGU1RSSU5HEAgSCAoEQk9PTBAJEgsKB0ZMT0FUMTYQChIKCgZET1VCTEUQCxIKCgZVSU5UMzIQDBIK"
    "CgZVSU5UNjQQDRINCglDT01QTEVYNjQQDhIOCgpDT01QTEVYMTI4EA8SDAoIQkZMT0FUMTYQEBIQCgxGTE9BVDhFNE0z"
    "Rk4QERISCg5GTE9BVDhFNE0zRk5VWhASEg4KCkZMT0FUOEU1TTIQExISCg5GTE9BVDhFNU0yRk5VWhAUEgkKBVVJTlQ0"
    "EBUSCAoESU5UNBAWEg4KCkZMT0FUNEUyTTEQFxIOCgpGTE9BVDhFOE0wEBgSCQoFVUlOVDIQGRIICgRJTlQyEBoSDgoK"
    "RkxPQVQ2RTJNMxAbEg4KCkZMT0FUNkUzTTIQHCIpCgxEYXRhTG9jYXRpb24SCwoHREVGQVVMVBAAEgwKCEVYVEVSTkFM"
    "EAEiaAoRU3BhcnNlVGVuc29yUHJvdG8SIQoGdmFsdWVzGAEgASgLMhEub25ueC5UZW5zb3JQcm90bxIiCgdpbmRpY2Vz"
    "GAIgASgLMhEub25ueC5UZW5zb3JQcm90bxIMCgRkaW1zGAMgAygDIpUBChBUZW5zb3JTaGFwZVByb3RvEi0KA2RpbRgB"
    "IAMoCzIgLm9ubnguVGVuc29yU2hhcGVQcm90by5EaW1lbnNpb24aUgoJRGltZW5zaW9uEhMKCWRpbV92YWx1ZRgBIAEo"
    "A0gAEhMKCWRpbV9wYXJhbRgCIAEoCUgAEhIKCmRlbm90YXRpb24YAyABKAlCBwoFdmFsdWUitwUKCVR5cGVQcm90bxIt"
    "Cgt0ZW5zb3JfdHlwZRgBIAEoCzIWLm9ubnguVHlwZVByb3RvLlRlbnNvckgAEjEKDXNlcXVlbmNlX3R5cGUYBCABKAsy"
    "GC5vbm54LlR5cGVQcm90by5TZXF1ZW5jZUgAEicKCG1hcF90eXBlGAUgASgLMhMub25ueC5UeXBlUHJvdG8uTWFwSAAS"
    "MQoNb3B0aW9uYWxfdHlwZRgJIAEoCzIYLm9ubnguVHlwZVByb3RvLk9wdGlvbmFsSAASOgoSc3BhcnNlX3RlbnNvcl90"
    "eXBlGAggASgLMhwub25ueC5UeXBlUHJvdG8uU3BhcnNlVGVuc29ySAASLQoLb3BhcXVlX3R5cGUYByABKAsyFi5vbm54"
    "LlR5cGVQcm90by5PcGFxdWVIABISCgpkZW5vdGF0aW9uGAYgASgJGkIKBlRlbnNvchIRCgllbGVtX3R5cGUYASABKAUS"
    "JQoFc2hhcGUYAiABKAsyFi5vbm54LlRlbnNvclNoYXBlUHJvdG8aLgoIU2VxdWVuY2USIgoJZWxlbV90eXBlGAEgASgL"
    "Mg8ub25ueC5UeXBlUHJvdG8aPAoDTWFwEhAKCGtleV90eXBlGAEgASgFEiMKCnZhbHVlX3R5cGUYAiABKAsyDy5vbm54"
    "LlR5cGVQcm90bxouCghPcHRpb25hbBIiCgllbGVtX3R5cGUYASABKAsyDy5vbm54LlR5cGVQcm90bxpICgxTcGFyc2VU"
    "ZW5zb3ISEQoJZWxlbV90eXBlGAEgASgFEiUKBXNoYXBlGAIgASgLMhYub25ueC5UZW5zb3JTaGFwZVByb3RvGjgKBk9w"
    "YXF1ZRIOCgZkb21haW4YASABKAkSDAoEbmFtZRgCIAEoCUoECAMQBFIKcGFyYW1ldGVyc0IHCgV2YWx1ZSI1ChJPcGVy"
    "YXRvclNldElkUHJvdG8SDgoGZG9tYWluGAEgASgJEg8KB3ZlcnNpb24YAiABKAMihgMKDUZ1bmN0aW9uUHJvdG8SDAoE"
    "bmFtZRgBIAEoCRINCgVpbnB1dBgEIAMoCRIOCgZvdXRwdXQYBSADKAkSEQoJYXR0cmlidXRlGAYgAygJEi0KD2F0dHJp"
    "YnV0ZV9wcm90bxgLIAMoCzIULm9ubnguQXR0cmlidXRlUHJvdG8SHQoEbm9kZRgHIAMoCzIPLm9ubnguTm9kZVByb3Rv"
    "EhIKCmRvY19zdHJpbmcYCCABKAkSLgoMb3BzZXRfaW1wb3J0GAkgAygLMhgub25ueC5PcGVyYXRvclNldElkUHJvdG8S"
    "DgoGZG9tYWluGAogASgJEhAKCG92ZXJsb2FkGA0gASgJEigKCnZhbHVlX2luZm8YDCADKAsyFC5vbm54LlZhbHVlSW5m"
    "b1Byb3RvEjQKDm1ldGFkYXRhX3Byb3BzGA4gAygLMhwub25ueC5TdHJpbmdTdHJpbmdFbnRyeVByb3RvSgQIAhADSgQI"
    "AxAEUg1zaW5jZV92ZXJzaW9uUgZzdGF0dXMqggMKB1ZlcnNpb24SEgoOX1NUQVJUX1ZFUlNJT04QABIZChVJUl9WRVJT"
    "SU9OXzIwMTdfMTBfMTAQARIZChVJUl9WRVJTSU9OXzIwMTdfMTBfMzAQAhIYChRJUl9WRVJTSU9OXzIwMTdfMTFfMxAD"
    "EhgKFElSX1ZFUlNJT05fMjAxOV8xXzIyEAQSGAoUSVJfVkVSU0lPTl8yMDE5XzNfMTgQBRIYChRJUl9WRVJTSU9OXzIw"
    "MTlfOV8xORAGEhcKE0lSX1ZFUlNJT05fMjAyMF81XzgQBxIYChRJUl9WRVJTSU9OXzIwMjFfN18zMBAIEhcKE0lSX1ZF"
    "UlNJT05fMjAyM181XzUQCRIYChRJUl9WRVJTSU9OXzIwMjRfM18yNRAKEhkKFUlSX1ZFUlNJT05fMjAyNV8wNV8xMhAL"
    "EhkKFUlSX1ZFUlNJT05fMjAyNV8wOF8yNhAMEhkKFUlSX1ZFUlNJT05fMjAyNV8xMV8wNhANEg4KCklSX1ZFUlNJT04Q"
    "DiouCg5PcGVyYXRvclN0YXR1cxIQCgxFWFBFUklNRU5UQUwQABIKCgZTVEFCTEUQAUICSAM=")


@functools.lru_cache(maxsize=None)
def _schema_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(_ONNX_ML_PROTO)))
    descriptor = pool.FindMessageTypeByName("onnx.ModelProto")
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.21
    if get_class is not None:
        return get_class(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def model_proto_class(prefer_onnx=True):
    """The protobuf message class of an ONNX model (``onnx.ModelProto`` or its twin).

    Parameters
    ----------
    prefer_onnx : bool
        False always builds the class from the schema kept here (used by the tests to check
        both readers alike).

    Raises
    ------
    ImportError
        When neither ``onnx`` nor ``protobuf`` can be imported.
    """
    if prefer_onnx:
        try:
            from onnx import ModelProto
            return ModelProto
        except ImportError:
            pass
    return _schema_class()
