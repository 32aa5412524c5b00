"""PowerShell template engine: parameter schemas, validation and injection-safe rendering.

A template is a PowerShell script body with ``{{key}}`` placeholders plus a parameter schema.
Rendering never pastes a value into the body. Instead it emits a generated assignment block
at the top of the script, one line per parameter::

    $rfp_username = 'O''Brien'
    $rfp_days = 30

and replaces each placeholder with a reference to the generated variable (``${rfp_username}``).
Every string value is written exactly once, as a single-quoted PowerShell literal in which each
character PowerShell treats as a single quote (U+0027, U+2018, U+2019, U+201A, U+201B) is
doubled, so no value can end its literal early; numbers come from Python ints and floats the
engine formatted itself, booleans are ``$true``/``$false``. The placeholder replacement text is
a constant that depends only on the key, never on the value, so the structure of the rendered
script is the same for every value. The body is scanned with a small PowerShell lexer only to
refuse placeholders that could never expand (inside single-quoted strings and here-strings);
the injection guarantee does not depend on that lexer.

Pure Python: no Flask, no database. See docs/template-authoring.md for the author's view.

The package: `spec` (types, limits, errors, value objects), `literals` (PowerShell literals),
`scanner` (the body lexer), `values` (value and rule checks), `template_engine` (schema
parsing, template validation, compiling) and `compiled` (rendering a compiled template, and
the per-process cache). This module is its public face.
"""

from services.scripts.engine.compiled import CompiledTemplate, CompiledTemplateCache
from services.scripts.engine.literals import quote_ps_string
from services.scripts.engine.spec import (
    ENV_VARIABLE_PREFIX,
    PARAM_TYPES,
    RESERVED_VARIABLE_PREFIX,
    SECRET_DELIVERY_MODES,
    ParameterSpec,
    RenderedScript,
    ScriptRenderError,
    SecretInput,
    TemplateDefinitionError,
)
from services.scripts.engine.template_engine import ScriptTemplateEngine
from shared.vocabulary import REDACTION_MARKER

__all__ = [
    "ENV_VARIABLE_PREFIX",
    "PARAM_TYPES",
    "CompiledTemplate",
    "CompiledTemplateCache",
    "REDACTION_MARKER",
    "SECRET_DELIVERY_MODES",
    "SecretInput",
    "RESERVED_VARIABLE_PREFIX",
    "ParameterSpec",
    "RenderedScript",
    "ScriptRenderError",
    "ScriptTemplateEngine",
    "TemplateDefinitionError",
    "quote_ps_string",
]
