"""course_lib.minigpt (MiniGPT's building blocks), the tensor grading helpers and the latency plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import grading
from course_lib.minigpt import (
    MiniGPT,
    apply_rope,
    count_params,
    decode,
    encode,
    load_minigpt,
    weights_fingerprint,
)
from course_lib.specs import MINIGPT


@pytest.fixture(scope="module")
def model() -> MiniGPT:
    return load_minigpt()


def test_config_is_the_spec_row(model):
    assert (model.n_layers, model.n_heads, model.n_kv_heads, model.head_dim) == (
        MINIGPT.n_layers, MINIGPT.n_heads, MINIGPT.n_kv_heads, MINIGPT.head_dim)
    assert (model.d_model, model.vocab_size, model.max_seq_len) == (
        MINIGPT.d_model, MINIGPT.vocab_size, MINIGPT.max_seq_len)
    assert MINIGPT.n_heads * MINIGPT.head_dim == MINIGPT.d_model
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_parameter_count_matches_spec_and_formula(model):
    s = MINIGPT
    per_layer = (s.d_model * s.n_heads * s.head_dim            # wq
                 + 2 * s.d_model * s.n_kv_heads * s.head_dim  # wk, wv
                 + s.n_heads * s.head_dim * s.d_model         # wo
                 + 2 * s.d_model * s.d_ff                     # w1, w2
                 + 2 * s.d_model)                             # two RMSNorm weights
    expected = 2 * s.vocab_size * s.d_model + s.n_layers * per_layer + s.d_model
    assert count_params(model) == expected
    assert MINIGPT.n_params == count_params(model)


def test_weights_are_deterministic_and_seed_dependent(model):
    again = load_minigpt()
    assert weights_fingerprint(model) == weights_fingerprint(again)
    for (na, a), (nb, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert na == nb and torch.equal(a, b)
    assert weights_fingerprint(MiniGPT(seed=1)) != weights_fingerprint(model)


def test_no_builtin_forward(model):
    with pytest.raises(NotImplementedError, match="forward"):
        model(torch.zeros(1, 3, dtype=torch.long))


def test_block_parts_shapes(model):
    block = model.blocks[0]
    x = model.embed(torch.randint(0, 256, (2, 7)))
    assert x.shape == (2, 7, 128)
    q, k, v = block.qkv(block.attn_norm(x))
    assert q.shape == (2, 4, 7, 32) and k.shape == (2, 2, 7, 32) and v.shape == (2, 2, 7, 32)
    assert block.out(q).shape == (2, 7, 128)
    assert block.mlp(block.mlp_norm(x)).shape == (2, 7, 128)
    assert model.logits(x).shape == (2, 7, 256)
    with pytest.raises(ValueError, match="attention output"):
        block.out(k)  # only H_kv heads


def test_embed_rejects_bad_ids(model):
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        model.embed(torch.tensor([[0, 256]]))
    with pytest.raises(TypeError, match="integer"):
        model.embed(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="idx"):
        model.embed(torch.zeros(3, dtype=torch.long))


def test_rope_depends_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def score(i: int, j: int) -> float:
        return float((apply_rope(q, torch.tensor([i])) * apply_rope(k, torch.tensor([j]))).sum())

    assert score(5, 2) == pytest.approx(score(105, 102), rel=1e-4)
    assert score(5, 2) == pytest.approx(score(10_005, 10_002), rel=1e-3)
    assert score(5, 2) != pytest.approx(score(5, 3), rel=1e-3)
    # position 0 is the identity; rotations keep the norm
    assert torch.equal(apply_rope(q, torch.tensor([0])), q)
    assert float(apply_rope(q, torch.tensor([777])).norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_rope_rejects_bad_positions():
    x = torch.randn(1, 2, 3, 8)
    with pytest.raises(ValueError, match="3 tokens"):
        apply_rope(x, torch.arange(4))
    with pytest.raises(TypeError, match="integers"):
        apply_rope(x, torch.arange(3.0))
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(1, 1, 3, 7), torch.arange(3))


def test_encode_decode_roundtrip():
    ids = encode("KV cache: ü")
    assert ids.dtype == torch.long and ids.shape == (1, len("KV cache: ü".encode()))
    assert decode(ids) == "KV cache: ü"


# ------------------------------------------------------------------------------------------------
# Tensor grading helpers
# ------------------------------------------------------------------------------------------------

def test_rel_error_is_scale_free():
    a = np.array([1.0, 2.0, 3.0])
    assert grading.rel_error(a * (1 + 1e-6), a) == pytest.approx(1e-6, rel=1e-6)
    assert grading.rel_error(1e6 * a * (1 + 1e-6), 1e6 * a) == pytest.approx(1e-6, rel=1e-6)
    assert grading.rel_error(a[:2], a) == math.inf
    assert grading.rel_error(np.array([np.nan, 2, 3]), a) == math.inf


def test_check_tensor_passes_within_tolerance_and_names_known_mistakes():
    ref = torch.randn(2, 3, 4)
    grading.check_tensor(ref * (1 + 1e-6), ref, call="f()", rtol=1e-4)
    wrong = ref * 2
    with pytest.raises(grading.AnswerError, match=r"(?s)relative error.*Likely mistake: doubled"):
        grading.check_tensor(wrong, ref, call="f()", rtol=1e-4, known={"doubled": wrong.numpy()})
    with pytest.raises(grading.AnswerError) as info:
        grading.check_tensor(wrong + 1, ref, call="f()", rtol=1e-4, known={"doubled": wrong.numpy()},
                             axes=("a", "b", "c"))
    assert "Likely mistake" not in str(info.value) and "Largest difference at a=" in str(info.value)


def test_check_tensor_shape_dtype_none_nan_messages():
    ref = torch.zeros(2, 3)
    with pytest.raises(grading.AnswerError, match="transposed"):
        grading.check_tensor(torch.zeros(3, 2), ref, call="f()", rtol=1e-4)
    with pytest.raises(grading.AnswerError, match="H_kv heads"):
        grading.check_tensor(torch.zeros(2, 1), ref, call="f()", rtol=1e-4,
                             shape_mistakes={(2, 1): "returned H_kv heads"})
    with pytest.raises(grading.AnswerError, match="dtype"):
        grading.check_tensor(torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 3), call="f()",
                             rtol=1e-4, dtype=torch.float32)
    with pytest.raises(grading.AnswerError, match="return"):
        grading.check_tensor(None, ref, call="f()", rtol=1e-4)
    with pytest.raises(grading.AnswerError, match="NaN"):
        grading.check_tensor(torch.full((2, 3), float("nan")), ref, call="f()", rtol=1e-4)
    with pytest.raises(grading.AnswerError, match="tensor was expected"):
        grading.check_tensor([[0.0] * 3] * 2, ref, call="f()", rtol=1e-4)


def test_check_tokens():
    exp = np.array([[1, 2, 3]])
    grading.check_tokens(torch.tensor([[1, 2, 3]]), exp, call="g()")
    with pytest.raises(grading.AnswerError, match="token 2 of sequence 0 is 4, expected 3"):
        grading.check_tokens(torch.tensor([[1, 2, 4]]), exp, call="g()")
    with pytest.raises(grading.AnswerError, match="shape"):
        grading.check_tokens(torch.tensor([[1, 2]]), exp, call="g()")
    with pytest.raises(grading.AnswerError, match="integers"):
        grading.check_tokens(torch.tensor([[1.0, 2.0, 3.0]]), exp, call="g()")


# ------------------------------------------------------------------------------------------------
# Latency plots
# ------------------------------------------------------------------------------------------------

def test_latency_and_speedup_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.plotting import plot_latency, plot_speedup
    from course_lib.timing import Timing

    t = Timing(0.01, 0.009, 0.012, 3, (0.009, 0.01, 0.012))
    ax = plot_latency([10, 100], {"cached": [t, t], "uncached": [0.02, 0.2]})
    assert ax.get_xscale() == "log" and "tokens" in ax.get_xlabel() and "(s)" in ax.get_ylabel()
    assert len(ax.get_legend().get_texts()) == 2
    ax2 = plot_speedup([10, 100], measured=[2.0, 20.0], predicted=[11, 101])
    assert "x" in ax2.get_ylabel() and len(ax2.get_legend().get_texts()) == 2
    with pytest.raises(ValueError, match="lengths"):
        plot_latency([10, 100], {"cached": [t]})
    plt.close("all")
