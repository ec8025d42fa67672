"""Resource bounds for chat-template rendering: time, steps and size (reliability defects D5, D6).

Scope: `bounded_environment` builds the Jinja sandbox chat templates render in: jinja2's
`ImmutableSandboxedEnvironment` (which already stops code execution) plus a per-render
`RenderBudget` that bounds what a hostile template can consume. `render_bounded` renders through
`Template.generate()` under a budget and returns the text. The budget is checked:

- on every loop iteration (every ``{% for %}`` iterable is wrapped by a counting filter), every
  call (macros, methods, globals) and every intercepted operator: at most `max_steps` steps and
  `max_seconds` of wall time per render;
- on sizes *before* they are allocated: ``*`` and ``+`` on strings and sequences, ``~``, ``%``
  and ``.format`` field widths, ``**`` on integers, the ``center``/``indent``/``batch``/``slice``/
  ``replace``/``join``/``format`` filters and the matching ``str`` methods, ``lipsum``, macro and
  block buffers, and the rendered output: at most `max_chars` characters each.

A render holds the GIL, so it slows every other request on the Runner while it runs: the bounds
are what keep that short (a hostile nested loop stops within about a second, at `max_steps`). Exceeding a bound
raises `TemplateResourceError` (a `TemplateError`, so a `ValueError`).

Non-goals: sandboxing code execution (jinja2's sandbox does that), isolating renders in a
separate process, bounding memory held by the caller's own inputs.
"""

from __future__ import annotations

import contextvars
import itertools
import re
import string
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_LIMITS", "RenderLimits", "TemplateError", "TemplateResourceError", "bounded_environment",
           "render_bounded"]

_LOOP_FILTER = "agentkit_counted"
_PRINTF_RE = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_INT_BITS = 1 << 16
_KNOWN_MAX = 256
_Namespace: Any = type(None)  # jinja2.utils.Namespace once an environment is built (jinja2 loads lazily)
_MAX_INDENT = 16


class TemplateError(ValueError):
    """A chat template failed: syntax error, `raise_exception(...)` in the template, or a render error.

    Defined here, the lower module, and re-exported by `agentkit.engine.chat_template` (its usual
    import path), so the two modules import one way only."""


class TemplateResourceError(TemplateError):
    """A chat template exceeded a render bound (time, steps or size) or ran out of a resource."""


@dataclass(frozen=True)
class RenderLimits:
    """Per-render bounds: wall-clock seconds, steps (loop iterations, calls, operators), characters."""

    max_seconds: float = 2.0
    max_steps: int = 2_000_000
    max_chars: int = 8 * 1024 * 1024


DEFAULT_LIMITS = RenderLimits()


class RenderBudget:
    """What one render may still consume; `step` and `size` raise TemplateResourceError past a bound.

    `expanded(x)` is the size of `x` written out: characters of strings plus items of containers,
    a container shared N times counted N times. Every container a template builds is checked
    against `max_chars`, so no value can blow up when printed, serialized or compared.
    """

    def __init__(self, limits: RenderLimits, origin: str, timed: bool = True) -> None:
        self.limits, self.origin, self.steps = limits, origin, 0
        self.known: OrderedDict[int, tuple[Any, int]] = OrderedDict()  # id -> (container, size), recent
        self.deadline = time.monotonic() + limits.max_seconds if timed else float("inf")
        self.max_steps = limits.max_steps if timed else float("inf")

    def fail(self, what: str) -> TemplateResourceError:
        return TemplateResourceError(f"chat template from {self.origin} exceeded a render bound: {what}")

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.max_steps:
            raise self.fail(f"more than {self.limits.max_steps} steps (loop iterations and calls)")
        if time.monotonic() > self.deadline:
            raise self.fail(f"rendering took longer than {self.limits.max_seconds} s")

    def size(self, n: int, what: str) -> None:
        if n > self.limits.max_chars:
            raise self.fail(f"{what} would be {n} items/characters (limit {self.limits.max_chars})")

    def expanded(self, x: Any) -> int:
        if isinstance(x, str):
            return len(x)
        if isinstance(x, dict):
            items: Any = [*x.keys(), *x.values()]
        elif isinstance(x, (list, tuple)):
            items = x
        elif isinstance(x, _Namespace):
            items = list(x._Namespace__attrs.values())  # type: ignore[attr-defined]
        else:
            return 1
        hit = self.known.get(id(x))
        if hit is not None and hit[0] is x:
            self.known.move_to_end(id(x), last=True)
            return hit[1]
        total = len(items)
        for item in items:
            total += self.expanded(item)
            if total > self.limits.max_chars:
                return total
        return self.remember(x, total)

    def remember(self, x: Any, total: int) -> int:
        self.known[id(x)] = (x, total)
        if len(self.known) > _KNOWN_MAX:
            self.known.pop(next(iter(self.known), -1), None)  # tolerant of a concurrent untimed render
        return total

    def built(self, x: Any, what: str) -> Any:
        """Check a container the template just built (literal, method or global result)."""
        self.size(self.expanded(x), what)
        return x


_UNTIMED = RenderBudget(DEFAULT_LIMITS, "a template", timed=False)
_BUDGET: contextvars.ContextVar[RenderBudget | None] = contextvars.ContextVar("agentkit_render_budget", default=None)


def _budget() -> RenderBudget:
    return _BUDGET.get() or _UNTIMED


def _ints(values: Any) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _check_widths(budget: RenderBudget, widths: list[int], what: str) -> None:
    if widths:
        budget.size(max(widths), what)


def _printf_widths(fmt: str, args: Any) -> list[int]:
    """Field widths and precisions of a printf-style format (``*`` takes them from the arguments)."""
    widths = [int(x) for m in _PRINTF_RE.finditer(fmt) for x in m.groups() if x and x != "*"]
    if "*" in fmt:
        widths += _ints(args if isinstance(args, (tuple, list)) else (args,))
    return widths


def _format_widths(fmt: str, args: Any, kwargs: Any) -> list[int]:
    """Widths in ``str.format`` field specs; nested ``{}`` specs take theirs from the arguments."""
    widths: list[int] = []
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec:
            widths += [int(x) for x in re.findall(r"\d+", spec)]
            if "{" in spec:
                widths += _ints(list(args) + list(kwargs.values()))
    return widths


def _check_join(budget: RenderBudget, sep: Any, items: list[Any], what: str) -> None:
    total = sum(len(x) for x in items if isinstance(x, str))
    budget.size(total + len(str(sep)) * max(len(items) - 1, 0), what)


def _check_replace(budget: RenderBudget, s: str, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(old, str) and isinstance(new, str)) or len(new) <= len(old):
        return
    hits = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    budget.size(len(s) + hits * (len(new) - len(old)), "a replace() result")


def _check_str_method(budget: RenderBudget, s: str, name: str, args: tuple, kwargs: dict) -> tuple:
    """Pre-check an amplifying ``str`` method call; returns the (possibly materialised) args."""
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_widths(budget, _ints(args[:1]), f"a {name}() result")
    elif name == "expandtabs":
        tab = (_ints(args[:1]) or _ints([kwargs.get("tabsize", 8)]) or [8])[0]
        budget.size(len(s) + s.count("\t") * tab, "an expandtabs() result")
    elif name == "replace" and len(args) >= 2:
        _check_replace(budget, s, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count", -1))
    elif name == "join" and args:
        items = list(args[0])
        _check_join(budget, s, items, "a join() result")
        args = (items, *args[1:])
    elif name in ("format", "format_map"):
        _check_widths(budget, _format_widths(s, args, kwargs), "a format() field")
    return args


def _bounded_filters(env: Any) -> None:
    """Replace the amplifying filters by pre-checking wrappers (``pass_context``: never constant-folded)."""
    from jinja2.utils import _PassArg, pass_context

    def checks(name: str, budget: RenderBudget, value: Any, args: tuple, kwargs: dict) -> tuple:
        if name in ("center", "indent"):
            width = args[0] if args else kwargs.get("width", 80 if name == "center" else 4)
            n = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            lines = value.count("\n") + 1 if isinstance(value, str) and name == "indent" else 1
            budget.size(n * lines + (len(value) if isinstance(value, str) else 0), f"a {name} filter result")
        elif name in ("batch", "slice"):
            count = _ints(args[:1] or [kwargs.get("linecount", kwargs.get("slices"))])
            _check_widths(budget, count, f"{name} count")
            fill = args[1] if len(args) > 1 else kwargs.get("fill_with")
            if count and fill is not None:
                budget.size(count[0] * budget.expanded(fill), f"{name} fill_with padding")
        elif name == "tojson":
            indent = args[1] if len(args) > 1 else kwargs.get("indent")
            width = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
            if width > _MAX_INDENT:
                raise budget.fail(f"tojson indent {width} is wider than {_MAX_INDENT}")
        elif name == "replace" and isinstance(value, str) and len(args) >= 2:
            _check_replace(budget, value, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
        elif name == "format" and isinstance(value, str):
            _check_widths(budget, _printf_widths(value, args or kwargs), "a format filter field")
        elif name == "join":
            value = list(value)
            _check_join(budget, args[0] if args else kwargs.get("d", ""), value, "a join filter result")
        return value, args

    def wrap(name: str, fn: Any) -> Any:
        passes = _PassArg.from_obj(fn)

        @pass_context
        def bounded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            budget = _budget()
            budget.step()
            value, args = checks(name, budget, value, args, kwargs)
            if passes is _PassArg.context:
                return fn(context, value, *args, **kwargs)
            if passes is _PassArg.eval_context:
                return fn(context.eval_ctx, value, *args, **kwargs)
            if passes is _PassArg.environment:
                return fn(context.environment, value, *args, **kwargs)
            return fn(value, *args, **kwargs)

        return bounded

    for name in ("center", "indent", "batch", "slice", "replace", "format", "join", "tojson"):
        env.filters[name] = wrap(name, env.filters[name])
    plain_sum = env.filters["sum"]

    @pass_context
    def linear_sum(context: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        # sum() of lists copies quadratically in C with the GIL held: chain them instead (same result)
        items = list(iterable)
        if attribute is None and isinstance(start, (list, tuple)) and all(type(x) is type(start) for x in items):
            budget = _budget()
            budget.size(budget.expanded(start) + sum(budget.expanded(x) for x in items), "a sum of sequences")
            return type(start)(itertools.chain(start, *items))
        return plain_sum(context.environment, items, attribute, start)

    env.filters["sum"] = linear_sum

    @pass_context
    def counted(context: Any, iterable: Any) -> Any:
        budget = _budget()
        budget.step()
        for i, item in enumerate(iterable, 1):
            if not i & 15:
                budget.step(16)
            yield item

    env.filters[_LOOP_FILTER] = counted


class _Buffer(list):
    """The output buffer of a macro or block: counts what is written into it against the budget."""

    def __init__(self, budget: RenderBudget) -> None:
        super().__init__()
        self.budget, self.chars = budget, 0

    def append(self, item: Any) -> None:
        self.chars += len(item) if isinstance(item, str) else 1
        self.budget.size(self.chars, "a macro or block's output")
        super().append(item)

    def extend(self, items: Any) -> None:
        for item in items:
            self.append(item)


def _bounded_lipsum(generate: Any) -> Any:
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
        _budget().size(int(n) * int(max) * 16, "lipsum() output")
        return generate(n=n, html=html, min=min, max=max)

    return lipsum


def bounded_environment(base: type, filters: dict[str, Any], globals: dict[str, Any], **options: Any) -> Any:  # noqa: A002
    """An instance of a bounded subclass of the sandbox class `base` (built with `options`), with
    `filters` and `globals` added before the amplifying filters are wrapped."""
    import jinja2.nodes as nodes
    from jinja2.compiler import CodeGenerator
    from jinja2.runtime import markup_join
    from jinja2.utils import Namespace

    global _Namespace
    _Namespace = Namespace

    class BoundedCodeGenerator(CodeGenerator):
        def buffer(self, frame: Any) -> None:  # macro, call, filter and set blocks: a counting list
            frame.buffer = self.temporary_identifier()
            self.writeline(f"{frame.buffer} = environment.agentkit_buffer()")

        def _built(self, visit: Any, node: Any, frame: Any) -> None:
            self.write("environment.agentkit_built(")
            visit(self, node, frame)
            self.write(")")

        def visit_List(self, node: Any, frame: Any) -> None:
            self._built(CodeGenerator.visit_List, node, frame)

        def visit_Dict(self, node: Any, frame: Any) -> None:
            self._built(CodeGenerator.visit_Dict, node, frame)

        def visit_Tuple(self, node: Any, frame: Any) -> None:
            if node.ctx == "load":  # not an assignment target
                self._built(CodeGenerator.visit_Tuple, node, frame)
            else:
                super().visit_Tuple(node, frame)

        def visit_Concat(self, node: Any, frame: Any) -> None:  # ``a ~ b``: joined through the budget
            escape = "context.eval_ctx.volatile" if frame.eval_ctx.volatile else str(bool(frame.eval_ctx.autoescape))
            self.write("environment.agentkit_concat((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write(f"), {escape})")

    class BoundedSandbox(base):  # type: ignore[misc, valid-type]
        code_generator_class = BoundedCodeGenerator
        intercepted_binops = frozenset(["*", "**", "+", "%"])

        @staticmethod
        def concat(parts: Any) -> str:  # macro, block and ``{% set %}`` buffers
            parts = list(parts)
            _check_join(_budget(), "", parts, "a template buffer")
            return "".join(parts)

        def agentkit_buffer(self) -> _Buffer:
            return _Buffer(_budget())

        def agentkit_built(self, value: Any) -> Any:
            return _budget().built(value, "a list, tuple or dict literal")

        def agentkit_concat(self, parts: tuple, escape: bool) -> str:
            parts = tuple(p if isinstance(p, str) else str(p) for p in parts)
            _check_join(_budget(), "", list(parts), "a ~ concatenation")
            return markup_join(parts) if escape else "".join(parts)

        def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
            tree = super()._parse(source, name, filename)
            for loop in tree.find_all(nodes.For):
                loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno)
            return tree

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            budget = _budget()
            budget.step()
            if operator == "+" and type(left) is str and type(right) is str:  # the common case, kept fast
                budget.size(len(left) + len(right), "a + concatenation")
                return left + right
            size = None
            if operator == "*":
                if _ints([left]) and _ints([right]) and left.bit_length() + right.bit_length() > _INT_BITS:
                    raise budget.fail("a * of integers too large")
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                        size = budget.expanded(seq) * max(n, 0)
                        budget.size(size, "a * repetition")
            elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                size = budget.expanded(left) + budget.expanded(right)
                budget.size(size, "a + concatenation")
            elif operator == "**" and _ints([left]) and _ints([right]) and right > 0:
                if abs(left).bit_length() * right > _INT_BITS:
                    raise budget.fail(f"{left} ** {right} is too large an integer")
            elif operator == "%" and isinstance(left, str):
                _check_widths(budget, _printf_widths(left, right), "a % format field")
            result = super().call_binop(context, operator, left, right)
            if size is not None and isinstance(result, (list, tuple)):
                budget.remember(result, size)
            return result

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            budget = _budget()
            budget.step()
            target = getattr(__obj, "__wrapped__", __obj)
            owner = getattr(target, "__self__", None)
            if isinstance(owner, str):
                args = _check_str_method(budget, owner, getattr(target, "__name__", ""), args, kwargs)
            result = super().call(__context, __obj, *args, **kwargs)
            if isinstance(result, (list, tuple, dict, _Namespace)):
                budget.built(result, "a value returned by a call")
            return result

    env = BoundedSandbox(**options)
    env.filters.update(filters)
    env.globals.update(globals)
    _bounded_filters(env)
    env.globals["lipsum"] = _bounded_lipsum(env.globals["lipsum"])
    return env


def render_bounded(template: Any, variables: dict[str, Any], origin: str, limits: RenderLimits = DEFAULT_LIMITS) -> str:
    """Render compiled `template` with `variables` under a fresh budget; the output is capped too.

    Raises TemplateResourceError when a bound is exceeded. Other exceptions propagate unchanged.
    """
    budget = RenderBudget(limits, origin)
    token = _BUDGET.set(budget)
    parts: list[str] = []
    total = 0
    chunks = template.generate(**variables)
    try:
        for chunk in chunks:
            total += len(chunk)
            budget.size(total, "the rendered prompt")
            budget.step()
            parts.append(chunk)
    finally:
        chunks.close()
        _BUDGET.reset(token)
    return "".join(parts)
