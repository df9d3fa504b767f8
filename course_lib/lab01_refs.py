"""Lab 01's reference file: its name, its keys, and the named mistakes whose outputs it stores.

Lab 01's hidden tests compare a student's ``attention``, ``forward`` and ``generate`` with
outputs stored in ``source/lab01_kv_cache/ref/lab01_refs.npz``, made by the course's solution on
a GPU. Four places speak this file's language: the lab's test cells (which read it), the script
that writes it, the calibration of the tolerance, and the lab's named mistakes (whose outputs it
stores, so that a test can say "this looks like a mask that is not offset"). This module is the
one definition of that language:

* the file's name and its keys (``attn/<i>/q``, ``fwd/bug/<mistake>``, ...), built by the
  ``*_key`` functions below and nowhere else;
* :data:`ATTENTION_MISTAKES` and :data:`FORWARD_MISTAKES`: the mistakes whose outputs the file
  stores, each with the words the tests name it by;
* the cases a test cell reads from the opened file (:func:`attention_cases`,
  :func:`forward_case`, :func:`generation_cases`), each with its inputs, its expected output
  and the outputs of the named mistakes.

A test cell opens the file itself (``np.load(PATH, allow_pickle=False)``, from the notebook's
folder); this module reads no file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

#: The reference file and its human-readable metadata, in ``source/lab01_kv_cache/ref/``.
FILE = "lab01_refs.npz"
META_FILE = "lab01_refs_meta.json"
#: Where a test cell opens it: relative to the notebook's folder.
PATH = f"ref/{FILE}"

#: Mistakes whose attention outputs are stored for every attention case: mistake -> how the
#: attention test names it.
ATTENTION_MISTAKES: dict[str, str] = {
    "no_scale": "scores not divided by sqrt(D): s = q.k / sqrt(head_dim)",
    "mask_not_offset": "causal mask not offset by past_len = T_k - T_q (query i must see keys "
                       "0..T_k-T_q+i; tril(T_q, T_k) and SDPA is_causal=True align the mask top-left)",
    "sdpa_is_causal": "causal mask not offset by past_len = T_k - T_q (scaled_dot_product_attention("
                      "is_causal=True) aligns the mask top-left, wrong when T_q < T_k)",
    "softmax_wrong_axis": "softmax over the wrong axis: normalise over the keys (dim=-1)",
    "gqa_repeat": "GQA: query head h used KV head h % H_kv (as k.repeat(1, g, 1, 1), or q grouped as "
                  "(B, g, H_kv, ...), give) instead of h // g with g = H // H_kv",
}
#: How a mask mistake shows in a decode step (T_q = 1), put before its description there.
DECODE_FIRST_KEY = "decode step attends only to the first key: "
_MASK_MISTAKES = ("mask_not_offset", "sdpa_is_causal")

#: Mistakes whose forward logits are stored (through a cache, and without one where they differ
#: from the right logits): mistake -> how the forward test names it.
FORWARD_MISTAKES: dict[str, str] = {
    "positions_restart": "positions restart at 0 for the new tokens: with a cache they are "
                         "past_len, past_len+1, ... (read past_len from cache.seq_len())",
    "cache_not_appended": "the cache is not appended: the new keys must go after the old ones",
    "whole_buffer": "the cache returns its whole buffer (empty slots included) instead of the filled part",
    "mask_not_offset": "causal mask not offset by past_len = T_k - T_q (decode step attends only to the "
                       "first key? tril(T_q, T_k) and SDPA is_causal=True align the mask top-left)",
    "sdpa_is_causal": "causal mask not offset by past_len: scaled_dot_product_attention(is_causal=True) "
                      "is wrong when T_q < T_k",
    "no_scale": "attention scores not divided by sqrt(D)",
    "softmax_wrong_axis": "softmax over the wrong axis",
    "gqa_repeat": "GQA: query head h used KV head h % H_kv instead of h // (H // H_kv)",
}

# ---- keys ------------------------------------------------------------------------------------

#: The metadata: a JSON string (device, versions, precision settings, weights' fingerprint, ...).
META = "meta"
ATTENTION_COUNT = "attn/n_cases"
FORWARD_IDX = "fwd/idx"
FORWARD_LOGITS = "fwd/logits"
FORWARD_SCHEDULE = "fwd/schedule"
FORWARD_CAPACITY = "fwd/capacity"
GENERATION_COUNT = "gen/n_cases"


def attention_key(case: int, field: str) -> str:
    """Attention case ``case``'s ``q``, ``k``, ``v``, ``causal`` or ``out`` (the right output)."""
    return f"attn/{case}/{field}"


def attention_mistake_key(case: int, mistake: str) -> str:
    """Attention case ``case``'s output under ``mistake`` (a key of :data:`ATTENTION_MISTAKES`)."""
    return f"attn/{case}/bug/{mistake}"


def forward_mistake_key(mistake: str, cached: bool = True) -> str:
    """The forward logits under ``mistake``: through a cache, or without one."""
    return f"fwd/bug/{mistake}" if cached else f"fwd/bug_uncached/{mistake}"


def generation_key(case: int, field: str) -> str:
    """Generation case ``case``'s ``prompt``, ``max_new``, ``tokens`` or ``min_margin``."""
    return f"gen/{case}/{field}"


def metadata(refs: Mapping[str, np.ndarray]) -> dict:
    """The metadata recorded in an opened reference file."""
    return json.loads(str(refs[META]))


# ---- the cases the test cells read -----------------------------------------------------------

@dataclass(frozen=True)
class AttentionCase:
    """``attention(q, k, v, causal)``: the right output and the named mistakes' outputs."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    causal: bool
    expected: np.ndarray
    known: dict[str, np.ndarray]

    @property
    def call(self) -> str:
        return (f"attention(q{tuple(self.q.shape)}, k{tuple(self.k.shape)}, v{tuple(self.v.shape)}, "
                f"causal={self.causal})")

    @property
    def shape_mistakes(self) -> dict[tuple[int, ...], str]:
        """Wrong output shapes with their likely cause."""
        B, H, T_q, D = self.q.shape
        H_kv, T_k = self.k.shape[1], self.k.shape[2]
        return {(B, H_kv, T_q, D): "returned H_kv heads: each KV head serves H // H_kv query heads, and the "
                                   "output has one head per query head",
                (B, H, T_k, D): "returned T_k rows: the output has one row per query"}


def attention_cases(refs: Mapping[str, np.ndarray]) -> list[AttentionCase]:
    """Every attention case of an opened reference file, in the file's order."""
    cases = []
    for i in range(int(refs[ATTENTION_COUNT])):
        q, k, v = (torch.from_numpy(refs[attention_key(i, name)]) for name in ("q", "k", "v"))
        known = {}
        for mistake, label in ATTENTION_MISTAKES.items():
            if attention_mistake_key(i, mistake) in refs:
                decode = mistake in _MASK_MISTAKES and q.shape[2] == 1
                known[DECODE_FIRST_KEY + label if decode else label] = refs[attention_mistake_key(i, mistake)]
        cases.append(AttentionCase(q, k, v, bool(refs[attention_key(i, "causal")]),
                                   refs[attention_key(i, "out")], known))
    return cases


@dataclass(frozen=True)
class ForwardCase:
    """``forward`` over token ids ``idx``: all at once, and in chunks through a cache."""

    idx: torch.Tensor
    logits: np.ndarray
    schedule: list[int]
    capacity: int
    known: dict[str, np.ndarray]
    known_uncached: dict[str, np.ndarray]
    weights_fingerprint: str


def forward_case(refs: Mapping[str, np.ndarray]) -> ForwardCase:
    """The forward case of an opened reference file."""
    def known(cached: bool) -> dict[str, np.ndarray]:
        return {label: refs[forward_mistake_key(mistake, cached)] for mistake, label in FORWARD_MISTAKES.items()
                if forward_mistake_key(mistake, cached) in refs}

    return ForwardCase(torch.from_numpy(refs[FORWARD_IDX]), refs[FORWARD_LOGITS],
                       [int(n) for n in refs[FORWARD_SCHEDULE]], int(refs[FORWARD_CAPACITY]),
                       known(cached=True), known(cached=False), metadata(refs)["weights_fingerprint"])


@dataclass(frozen=True)
class GenerationCase:
    """``generate(model, prompt, max_new)``: the greedy tokens, prompt included."""

    prompt: torch.Tensor
    max_new: int
    tokens: np.ndarray


def generation_cases(refs: Mapping[str, np.ndarray]) -> list[GenerationCase]:
    """Every generation case of an opened reference file."""
    return [GenerationCase(torch.from_numpy(refs[generation_key(i, "prompt")]), int(refs[generation_key(i, "max_new")]),
                           refs[generation_key(i, "tokens")]) for i in range(int(refs[GENERATION_COUNT]))]
