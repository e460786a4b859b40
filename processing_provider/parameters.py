"""Processing parameter definitions built from the engine's declarations (core.parameters).

Nothing about a parameter's default, range or help is written here: the definitions, the help
text, the values handed to core and the dialog's early checks all come from
:data:`..core.parameters.PARAMETERS`. The dock builds its form from the same declarations
through this module.
"""

from qgis.core import (QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterNumber)

from ..core.parameters import EXPLAIN_METHODS, PARAMETERS, by_key, by_name, for_algorithm
from .compat import ADVANCED, NUMBER_DOUBLE, NUMBER_INTEGER

__all__ = ["EXPLAIN_METHODS", "PARAMETERS", "by_key", "by_name", "check_values", "definition",
           "for_algorithm", "help_html", "read_values"]


def definition(decl):
    """The QgsProcessingParameterDefinition of the declaration ``decl``."""
    if decl.is_switch:
        param = QgsProcessingParameterBoolean(decl.key, decl.label,
                                              defaultValue=decl.form_default)
    elif decl.kind is str:
        param = QgsProcessingParameterEnum(decl.key, decl.label,
                                           options=list(decl.choice_labels),
                                           defaultValue=decl.form_default)
    else:
        whole = decl.kind is int or decl.decimals == 0
        limits = {}
        if decl.form_minimum is not None:
            limits["minValue"] = decl.form_minimum
        if decl.maximum is not None:
            limits["maxValue"] = decl.maximum
        param = QgsProcessingParameterNumber(
            decl.key, decl.label, NUMBER_INTEGER if whole else NUMBER_DOUBLE,
            defaultValue=decl.form_default, **limits)
    if decl.advanced:
        param.setFlags(param.flags() | ADVANCED)
    param.setHelp(decl.help)
    return param


def form_value(algorithm, decl, parameters, context):
    """The value of ``decl`` as the form holds it (a number, an enum index, a bool)."""
    if decl.is_switch:
        return algorithm.parameterAsBoolean(parameters, decl.key, context)
    if decl.kind is str:
        return algorithm.parameterAsEnum(parameters, decl.key, context)
    if decl.kind is int or decl.decimals == 0:
        return algorithm.parameterAsInt(parameters, decl.key, context)
    return algorithm.parameterAsDouble(parameters, decl.key, context)


def read_values(algorithm, name, parameters, context):
    """``{engine name: value}`` of every declared parameter algorithm ``name`` shows."""
    return {decl.name: decl.from_form(form_value(algorithm, decl, parameters, context))
            for decl in for_algorithm(name)}


def check_values(algorithm, name, parameters, context):
    """``(ok, message)`` for checkParameterValues: each value against its declaration.

    The message starts with the parameter's key and says what range is accepted.
    """
    for decl in for_algorithm(name):
        try:
            decl.check(decl.from_form(form_value(algorithm, decl, parameters, context)))
        except ValueError as exc:
            return False, f"{decl.key}: {exc}"
    return True, ""


def help_html(name):
    """The parameters' help lines of algorithm ``name`` as an HTML list for shortHelpString."""
    items = "".join(f"<li><b>{d.key}</b> (default {_shown(d)}): {d.help}</li>"
                    for d in for_algorithm(name))
    return f"<ul>{items}</ul>"


def _shown(decl):
    if decl.is_switch:
        return "off" if decl.default is None else "on"
    if decl.kind is str:
        return decl.default
    value = decl.form_default
    return f"{value:g}" if isinstance(value, float) else str(value)
