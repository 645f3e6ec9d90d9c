"""C generation: a planned graph -> the model's C files, from the jinja2 templates of
codegen_templates/.

Renderer layer, bottom up:

    emit.py          C emission helpers every renderer shares (jinja2 environment, C comments,
                     const arrays, C types of arrays, integer literals of C text)
    patch_stage.py   the C of a patch-based first stage (schedule: tinyengine/patching.py)
    fused_pair.py    the C of a row-streamed expand -> depthwise pair (tinyengine/fusion.py)
    model.py         model.c / model.h / weights.c / weights.h of the whole graph

``generate(graph, plan, stamp)`` is the entry point; the helpers are exported for code
that renders its own C through the same templates.
"""
from .emit import KERNEL_DIR, TEMPLATES, ConstArray, c_comment, ctype_of, environment
from .model import GeneratedModel, generate

__all__ = ["GeneratedModel", "generate", "environment", "c_comment", "ConstArray", "ctype_of",
           "KERNEL_DIR", "TEMPLATES"]
