"""C emission helpers: what every renderer of C text shares.

Layer: below the renderers (codegen/model.py, codegen/patch_stage.py,
codegen/fused_pair.py) and above the IR and the ops; it decides nothing about the model.

* :func:`environment`: the jinja2 environment of codegen_templates/ (strict undefined,
  kernel switch reporting);
* :func:`c_comment`, :func:`c_string`, :class:`ConstArray`, :func:`ctype_of`: text safe in a
  C comment or string, a ``static const`` array, the C type of a NumPy array;
* :func:`param_symbols`: a part node's params with its arrays as named constants;
* ``LITERAL``: an integer literal of generated C (the patch stage and the fused pair turn
  calls that differ only in literals into one loop over a table of them).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from ..ir import C_TYPES

TEMPLATES = Path(__file__).resolve().parents[2] / "codegen_templates"
KERNEL_DIR = Path(__file__).resolve().parents[2] / "firmware" / "kernels"
LITERAL = re.compile(r"(?<![\w.])(\d+)(?![\w.])")


def environment() -> jinja2.Environment:
    """A jinja2 environment of codegen_templates/; take a fresh one per generated model (its
    ``switches`` collect the kernel switches that model's calls use)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    # op templates: `args` (a te_conv_args call, see codegen/model.py) and `prelude` (expand a packed
    # channel table first) are given by codegen.generate(); calls rendered elsewhere (patch stages,
    # fused pairs) use the plain call
    env.globals.update(args=None, prelude="")
    # kernel switches: a template reports which optional paths of its kernel the call can take
    env.globals.update(switches=KernelSwitches(), dw_dsp_paths=_dw_dsp_paths)
    env.filters["c_comment"] = c_comment    # a model's names and file name reach C only so
    return env


class KernelSwitches:
    """The preprocessor switches of the kernels' optional fast paths (``#ifndef X`` / ``#define
    X 1`` in the kernel's .c; leaving one out costs speed, never correctness).  Templates
    report, for every call they render, which switches the call can use
    (``{{ switches.need({...}) }}``, which prints nothing); the generated Makefile sets to 0
    those that no call uses."""

    def __init__(self):
        self.seen: set = set()
        self.used: set = set()

    def need(self, paths: dict) -> str:
        for name, used in paths.items():
            self.seen.add(name)
            if used:
                self.used.add(name)
        return ""

    def unused(self) -> list:
        return sorted(self.seen - self.used)


def _dw_dsp_paths(p) -> dict:
    from ..ops.depthwise_conv import dsp_paths

    return dsp_paths(p)


NAME_LIMIT = 400   # characters of a model's name kept in generated comments and strings


def _printable(text: str, escape) -> str:
    """text on one line (whitespace runs -> one space), at most NAME_LIMIT characters, every
    character outside printable ASCII (and the backslash) replaced by escape(ch)."""
    text = re.sub(r"\s+", " ", str(text))
    if len(text) > NAME_LIMIT:
        text = text[:NAME_LIMIT] + "..."
    return "".join(ch if " " <= ch <= "~" and ch != "\\" else escape(ch) for ch in text)


def c_comment(text: str) -> str:
    """Make arbitrary text (a model's tensor or node name) safe inside a /* */ comment (or a
    Makefile # comment), on one line: no comment delimiters, no trigraph (`??/` is a
    backslash in C99), no backslash, only printable ASCII (others as <U+XXXX>)."""
    text = _printable(text, lambda ch: "<backslash>" if ch == "\\" else f"<U+{ord(ch):04X}>")
    return re.sub(r"\?(?=\?)", "?-", text.replace("*/", "* /").replace("/*", "/ *"))


def c_string(text: str) -> str:
    """Make arbitrary text safe inside a C string literal: printable ASCII, quotes and
    backslashes as ' and /, no trigraphs."""
    text = _printable(text, lambda ch: "/" if ch == "\\" else "?")
    return text.replace('"', "'").replace("?", "\\?")


@dataclass
class ConstArray:
    symbol: str
    ctype: str
    values: np.ndarray
    comment: str

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def body(self, per_line: int = 24) -> str:
        flat = self.values.ravel()
        if flat.dtype.kind == "f":
            items = [("%.9g" % float(v)) + ("f" if self.ctype == "float" else "") for v in flat]
            items = [i if any(c in i for c in ".en") else i.replace("f", ".0f") for i in items]
        else:
            items = [str(v) for v in flat.tolist()]
            if flat.dtype == np.int32:
                items = ["(-2147483647 - 1)" if v == "-2147483648" else v for v in items]
            elif flat.dtype == np.uint32:
                items = [v + "u" for v in items]
        if not items:
            items = ["0"]
        return ",\n".join("    " + ", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def ctype_of(arr: np.ndarray) -> str:
    if arr.dtype == np.uint32:
        return "uint32_t"
    return C_TYPES[str(arr.dtype)] if str(arr.dtype) in C_TYPES else "int32_t"


def param_symbols(node, orig, k: int, consts: dict) -> dict:
    """A region node's params for its template (a patch's or a fused pair's row band's node,
    ``orig`` the model's node k): arrays become constants named after the whole node's
    (``te_n{k}_{key}``), with a digest suffix where the region's array differs."""
    params = {}
    for key, value in node.params.items():
        if isinstance(value, np.ndarray):
            whole = orig.params.get(key)
            sym = f"te_n{k}_{key}"
            if not (isinstance(whole, np.ndarray) and whole.shape == value.shape
                    and np.array_equal(whole, value)):
                digest = hashlib.sha1(value.tobytes()).hexdigest()[:8]
                sym = f"te_n{k}_{key}_{digest}"
            if sym not in consts:
                consts[sym] = ConstArray(sym, ctype_of(value), np.ascontiguousarray(value),
                                         c_comment(f"{node.name}: {key}"))
            params[key] = sym
        else:
            params[key] = value
    return params
