"""Which kernels of a model PST sparsifies: path rules, first match wins, every parameter covered.

A rule set is an ordered list of regexes over ``"a/b/kernel"`` paths (as in big_vision). Each
parameter takes the role of the first rule that matches it:

* ``"sparse"``: a kernel PST sparsifies. The rule says how the stored kernel holds its matrices:
  ``layout="in_out"`` for Flax ``Dense`` (``(d_in, d_out)``), ``"out_in"`` for Hugging Face's
  Flax ``Conv1D`` (GPT-2, ``(d_out, d_in)``), and ``parts`` names equal blocks fused along the
  output axis (GPT-2's ``c_attn`` is ``("q", "k", "v")``: three matrices, each with its own
  factors and mask).
* ``"head"``: the task head, trained in full (unless switched off).
* ``"frozen"``: everything else that is known; it never changes.

A parameter no rule matches is an error, and so is a rule set that selects no kernel: applying
the wrong rule set to a model fails loudly instead of silently freezing a layer.
"""

import collections
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp
from flax import traverse_util

from pst_jax.core.types import Array

logger = logging.getLogger("pst_jax")

Role = Literal["sparse", "head", "frozen"]
Layout = Literal["in_out", "out_in"]


class Rule(NamedTuple):
    """One path rule. ``pattern`` is searched (``re.search``) in the ``/``-joined path."""

    pattern: str
    role: Role
    layout: Layout = "in_out"
    parts: tuple[str, ...] = ()


class RuleSet(NamedTuple):
    """A named, ordered tuple of rules."""

    name: str
    rules: tuple[Rule, ...]


class Matrix(NamedTuple):
    """One sparsified matrix, a block of a stored kernel, seen in ``(d_in, d_out)`` layout.

    ``name`` keys its factors and mask: the kernel's path, plus ``":q"`` etc. for fused parts.
    """

    name: str
    path: str
    layout: Layout
    part: int
    parts: int
    d_in: int
    d_out: int

    @property
    def numel(self) -> int:
        return self.d_in * self.d_out


class Plan(NamedTuple):
    """The outcome of applying a rule set to a parameter tree: every path's role, and the matrices."""

    rule_set: str
    roles: dict[str, Role]
    matrices: tuple[Matrix, ...]

    def paths(self, role: Role) -> tuple[str, ...]:
        return tuple(path for path, r in self.roles.items() if r == role)

    def by_kernel(self) -> dict[str, tuple[Matrix, ...]]:
        """Matrices grouped by the stored kernel they come from, in plan order."""
        groups: dict[str, list[Matrix]] = collections.defaultdict(list)
        for m in self.matrices:
            groups[m.path].append(m)
        return {path: tuple(ms) for path, ms in groups.items()}


_ENCODER_LAYER = r"(^|/)encoder/layer/\d+/"
_ENCODER_KERNELS = (
    _ENCODER_LAYER
    + r"(attention/self/(query|key|value)|attention/output/dense|intermediate/dense|output/dense)/kernel$"
)

#: Hugging Face Flax BERT: the 6 linear kernels of every encoder layer.
BERT_RULES = RuleSet(
    "bert",
    (
        Rule(_ENCODER_KERNELS, "sparse"),
        Rule(r"^(classifier|qa_outputs)/", "head"),
        Rule(r"(^|/)embeddings/", "frozen"),
        Rule(r"(^|/)LayerNorm/(scale|bias)$", "frozen"),
        Rule(_ENCODER_LAYER + r".*/bias$", "frozen"),
        Rule(r"(^|/)pooler/dense/(kernel|bias)$", "frozen"),
        Rule(r"^(cls|lm_head)/", "frozen"),  # pretrained LM heads
    ),
)

#: Hugging Face Flax RoBERTa: same encoder layout as BERT, two-layer classifier head.
ROBERTA_RULES = RuleSet("roberta", BERT_RULES.rules)

_GPT2_BLOCK = r"(^|/)h/\d+/"
#: Hugging Face Flax GPT-2: q, k, v (split from the fused ``c_attn``), ``attn.c_proj``,
#: ``mlp.c_fc`` and ``mlp.c_proj`` of every block; ``Conv1D`` kernels are stored ``(d_out, d_in)``.
GPT2_RULES = RuleSet(
    "gpt2",
    (
        Rule(_GPT2_BLOCK + r"attn/c_attn/kernel$", "sparse", "out_in", ("q", "k", "v")),
        Rule(_GPT2_BLOCK + r"(attn/c_proj|mlp/c_fc|mlp/c_proj)/kernel$", "sparse", "out_in"),
        Rule(r"^(score|classifier)/", "head"),
        Rule(r"(^|/)(wte|wpe)/embedding$", "frozen"),
        Rule(r"(^|/)(ln_1|ln_2|ln_f)/(scale|bias)$", "frozen"),
        Rule(_GPT2_BLOCK + r".*/bias$", "frozen"),
        Rule(r"^lm_head/", "frozen"),  # untied LM head
    ),
)

_DECODER_LAYER = r"(^|/)layers/\d+/"
#: Llama-family decoders (Hugging Face Flax Llama, Mistral, Gemma; ``nn.Dense`` kernels ``(d_in, d_out)``):
#: q, k, v, o (k and v are ``(d, kv_heads * head_dim)`` under grouped-query attention) and the gated MLP's
#: gate, up and down of every layer. As for GPT-2, the LM head is frozen (Gemma's is the tied embedding).
LLAMA_RULES = RuleSet(
    "llama",
    (
        Rule(_DECODER_LAYER + r"(self_attn/(q|k|v|o)_proj|mlp/(gate|up|down)_proj)/kernel$", "sparse"),
        Rule(r"^(score|classifier)/", "head"),
        Rule(r"(^|/)embed_tokens/embedding$", "frozen"),
        Rule(r"(^|/)(input_layernorm|post_attention_layernorm|norm)/weight$", "frozen"),
        Rule(_DECODER_LAYER + r"(self_attn|mlp)/\w+/bias$", "frozen"),  # attention_bias, mlp_bias
        Rule(r"^lm_head/kernel$", "frozen"),  # untied LM head
    ),
)
MISTRAL_RULES = RuleSet("mistral", LLAMA_RULES.rules)
GEMMA_RULES = RuleSet("gemma", LLAMA_RULES.rules)

RULE_SETS: dict[str, RuleSet] = {
    "bert": BERT_RULES,
    "roberta": ROBERTA_RULES,
    "gpt2": GPT2_RULES,
    "llama": LLAMA_RULES,
    "mistral": MISTRAL_RULES,
    "gemma": GEMMA_RULES,
}


def rules_for(model_type: str) -> RuleSet:
    """The ready rule set for a Hugging Face ``config.model_type``.

    Example:
      >>> rules_for("mistral").name, sorted(RULE_SETS)
      ('mistral', ['bert', 'gemma', 'gpt2', 'llama', 'mistral', 'roberta'])
    """
    try:
        return RULE_SETS[model_type]
    except KeyError:
        raise ValueError(
            f"no PST rule set for model type {model_type!r}; known: {sorted(RULE_SETS)}. "
            "Pass your own pst_jax.RuleSet for other architectures."
        ) from None


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}``; an already flat dict is returned as a copy."""
    return traverse_util.flatten_dict(dict(params), sep="/")


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def _matrices(path: str, shape: tuple[int, ...], rule: Rule) -> Iterable[Matrix]:
    if len(shape) != 2:
        raise ValueError(f"rule {rule.pattern!r} selects {path!r} of shape {shape}: not a 2-D kernel")
    out_axis = 1 if rule.layout == "in_out" else 0
    parts = rule.parts or ("",)
    if shape[out_axis] % len(parts):
        raise ValueError(
            f"{path!r} of shape {shape} cannot be split into {len(parts)} parts {rule.parts} "
            f"along its output axis {out_axis}"
        )
    d_out = shape[out_axis] // len(parts)
    d_in = shape[1 - out_axis]
    for i, part in enumerate(parts):
        name = f"{path}:{part}" if part else path
        yield Matrix(name, path, rule.layout, i, len(parts), d_in, d_out)


def make_plan(params: Mapping[str, Any], rule_set: RuleSet) -> Plan:
    """Applies ``rule_set`` to a parameter tree (arrays or ``jax.ShapeDtypeStruct``; nested or flat).

    Raises:
      ValueError: a parameter matches no rule, or no kernel is selected for sparsification.
    """
    compiled = [(re.compile(rule.pattern), rule) for rule in rule_set.rules]
    roles: dict[str, Role] = {}
    matrices: list[Matrix] = []
    unmatched: list[str] = []
    hits: collections.Counter[Rule] = collections.Counter()
    for path, leaf in flatten(params).items():
        rule = next((r for regex, r in compiled if regex.search(path)), None)
        if rule is None:
            unmatched.append(path)
            continue
        hits[rule] += 1
        roles[path] = rule.role
        if rule.role == "sparse":
            matrices.extend(_matrices(path, tuple(leaf.shape), rule))
    if unmatched:
        shown = ", ".join(repr(p) for p in unmatched[:3])
        more = f" and {len(unmatched) - 3} more" if len(unmatched) > 3 else ""
        raise ValueError(
            f"{len(unmatched)} parameter(s) match no rule of rule set {rule_set.name!r}: {shown}{more}. "
            "Is this the right model type for the rule set?"
        )
    if not matrices:
        raise ValueError(f"rule set {rule_set.name!r} selects no kernel to sparsify in this model")
    for rule in rule_set.rules:
        logger.info("rule set %s: %-8s %4d params  %s", rule_set.name, rule.role, hits[rule], rule.pattern)
    return Plan(rule_set.name, roles, tuple(matrices))


def read_matrix(kernel: Array, m: Matrix) -> Array:
    """The ``(d_in, d_out)`` view of matrix ``m`` inside its stored kernel."""
    lo, hi = m.part * m.d_out, (m.part + 1) * m.d_out
    return kernel[:, lo:hi] if m.layout == "in_out" else kernel[lo:hi, :].T


def write_kernel(matrices: Iterable[Array], layout: Layout) -> Array:
    """Inverse of :func:`read_matrix` for all parts of one kernel, given in part order."""
    matrices = list(matrices)
    joined = matrices[0] if len(matrices) == 1 else jnp.concatenate(matrices, axis=1)
    return joined if layout == "in_out" else joined.T
