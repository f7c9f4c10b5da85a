"""Write docs/06-api-reference.md from the docstrings of minigt's public names.

    python docs/make_api.py

Run it by hand after changing a public signature or docstring; tests/test_docs.py regenerates the
page in memory and fails while the file differs. Each entry is the name, its signature (without
type annotations) and the first paragraph of its docstring, joined into one line. An op function
without a docstring of its own gets its `Function`'s (e.g. `add` shows `Add`'s), which states
the forward and the backward; a `*_like` function points at the function it mirrors.
"""
from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import minigt
import minigt.distributed as dist
import minigt.nn as nn
import minigt.nn.functional as F
import minigt.optim as optim
import minigt.viz as viz
from minigt import tensor_methods
from minigt.autograd import Function

PAGE = Path(__file__).resolve().parent / "06-api-reference.md"

# (heading, module, the public names in their listed order, intro line)
SECTIONS = [
    ("minigt", minigt, minigt.__all__,
     "Tensors, creation, dtypes, gradient modes, checkpoints and every core op."),
    ("minigt.nn", nn, nn.__all__, "Modules and layers, with PyTorch's names and parameter layouts."),
    ("minigt.nn.functional", F, F.__all__, "The stateless functions behind the layers."),
    ("minigt.nn.init", nn.init, None, "In-place initialisers (seeded by `minigt.manual_seed`)."),
    ("minigt.nn.utils", nn.utils, None, "Training utilities."),
    ("minigt.optim", optim, optim.__all__, "Optimizers."),
    ("minigt.optim.lr_scheduler", optim.lr_scheduler, None, "Learning-rate schedules."),
    ("minigt.distributed", dist, dist.__all__,
     "Many ranks: placements, sharded tensors, collectives, data and tensor parallelism."),
    ("minigt.viz", viz, viz.__all__, "The backward graph as DOT text and as a picture."),
]


def public_names(module: types.ModuleType) -> list[str]:
    """Functions and classes defined in `module` itself, in source order, not starting with _."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value) or inspect.isclass(value):
            names.append(name)
    return names


def signature(obj, drop_self: bool = False) -> str:
    """`(a, b=1)`: the call signature without annotations, or '' when there is none."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    if drop_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def first_paragraph(doc: str | None) -> str:
    """The docstring's first paragraph as one line (doctest lines left out)."""
    if not doc:
        return ""
    lines = []
    for line in inspect.cleandoc(doc).splitlines():
        if not line.strip() or line.lstrip().startswith(">>>"):
            break
        lines.append(line.strip())
    return " ".join(lines)


def function_class_for(func) -> type | None:
    """The `Function` subclass an op function applies: `add` -> `Add`, `log_softmax` -> `LogSoftmax`."""
    module = sys.modules.get(getattr(func, "__module__", ""), None)
    wanted = func.__name__.replace("_", "").lower()
    for value in vars(module or {}).values():
        if inspect.isclass(value) and issubclass(value, Function) and value.__name__.lower() == wanted:
            return value
    return None


def module_bullet(cls: type) -> str:
    """For a dataclass, whose docstring is only its signature: the bullet about it in its module's
    docstring ("- `Shard(dim)`: the tensor is cut along `dim`; ..."), as one line."""
    doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
    found = re.search(rf"^- `{cls.__name__}\(.*?`: (.*?)(?=^- |^$|\Z)", doc, re.M | re.S)
    return " ".join(found.group(1).split()) if found else ""


def summary(name: str, obj, module: types.ModuleType) -> str:
    """One line about `obj`: its docstring, else its Function's, else what it mirrors."""
    own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and own and own.startswith(f"{obj.__name__}("):  # a dataclass's own
        own = None
        text = module_bullet(obj)
        if text:
            return text
    text = first_paragraph(own)
    if text:
        return text
    if inspect.isfunction(obj):
        cls = function_class_for(obj)
        if cls is not None and cls.__doc__:
            return f"{first_paragraph(cls.__doc__)} (from `{cls.__name__}`)"
        if name.endswith("_like") and hasattr(module, name[:-5]):
            return f"`{name[:-5]}` with the shape of `t`, and its dtype and device unless given."
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return first_paragraph(obj.__doc__)
    return ""


def member_lines(cls: type) -> list[str]:
    """Public methods and properties that `cls` adds, and overrides that have a docstring of
    their own (an undocumented `forward` or `extra_repr` is the base class's protocol)."""
    lines = []
    skip = set(tensor_methods.METHODS) if cls is minigt.Tensor else set()
    for name, value in vars(cls).items():
        if name.startswith("_") or name in skip:
            continue
        func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if isinstance(value, property):
            shown, doc = f"`.{name}` (property)", value.__doc__
        elif inspect.isfunction(func):
            shown, doc = f"`.{name}{signature(func, drop_self=True)}`", func.__doc__
        else:
            continue
        overrides = any(name in vars(base) for base in cls.__mro__[1:])
        if overrides and not doc:
            continue
        lines.append(f"  - {shown}" + (f": {first_paragraph(doc)}" if doc else ""))
    if cls is minigt.Tensor:
        methods = sorted(n for n in tensor_methods.METHODS if not n.startswith("__"))
        lines.append("  - Every op below as a method (`x.sum(dim=1)`, `x.reshape(2, -1)`): "
                     + ", ".join(f"`{n}`" for n in methods)
                     + "; and the operators `+ - * / ** @`, unary `-`, `abs()`, `x[...]`, "
                       "comparisons and `~`. `x.T` reverses the dims.")
    return lines


def described(text: str) -> str:
    return f": {text}" if text else ""


def anchor(heading: str) -> str:
    """The fragment a code host gives a heading: lower case, punctuation dropped, '-' for spaces."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def entry(name: str, obj, module: types.ModuleType, heading: str) -> list[str]:
    if isinstance(obj, types.ModuleType):
        target = f"{heading}.{name}"
        known = [h for h, *_ in SECTIONS]
        where = f" (see [below](#{anchor(target)}))" if target in known else ""
        return [f"- `{name}` (module): {first_paragraph(obj.__doc__)}{where}"]
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        # A class that makes no instances through its own constructor (DTensor: see shard())
        # would show its base's signature, which misleads: show none.
        inherited = not any(k in vars(obj) for k in ("__init__", "__new__"))
        sig = "" if kind == "exception" or (inherited and signature(obj) != "()") else signature(obj)
        return [f"- `{name}{sig}` ({kind})" + described(summary(name, obj, module)), *member_lines(obj)]
    if callable(obj):
        return [f"- `{name}{signature(obj)}`" + described(summary(name, obj, module))]
    if type(obj).__module__.startswith("numpy") and hasattr(obj, "kind"):
        return [f"- `{name}`: the NumPy dtype `{obj}`"]
    return [f"- `{name}` = `{obj!r}`"]


def render() -> str:
    """The whole page, as `python docs/make_api.py` writes it."""
    out = [
        "# 6. API reference",
        "",
        "<!-- Generated by docs/make_api.py from the docstrings. Do not edit by hand: change the",
        "     docstring, then run `python docs/make_api.py` (tests/test_docs.py checks it). -->",
        "",
        "Every public name, with its signature and the first paragraph of its docstring. Type",
        "annotations are left out; the source has them. Arguments follow PyTorch's names.",
        "",
    ]
    out += [f"- [`{heading}`](#{anchor(heading)})" for heading, *_ in SECTIONS]
    for heading, module, names, intro in SECTIONS:
        out += ["", f"## `{heading}`", "", intro, ""]
        for name in names if names is not None else public_names(module):
            out += entry(name, getattr(module, name), module, heading)
    out += ["", "Back to [the index](README.md).", ""]
    return "\n".join(out)


def bare_entries(page: str) -> list[str]:
    """The entries of a rendered page that have no one-line description."""
    entries = [line.strip() for line in page.splitlines() if line.lstrip().startswith("- `")]
    return [line for line in entries if ": " not in line and " = " not in line]


def main() -> None:
    page = render()
    PAGE.write_text(page, encoding="utf-8")
    bare = bare_entries(page)
    print(f"wrote {PAGE}: {len(page.splitlines())} lines, {len(bare)} entries without a docstring")
    for line in bare:
        print("  ", line)


if __name__ == "__main__":
    main()
