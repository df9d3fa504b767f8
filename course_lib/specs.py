"""The course's one table of facts: model configurations and hardware figures.

Every number carries a source key; the keys are explained in ``SOURCES`` and
come from the course's fact sheet, ``docs/facts.md`` in this repository, which
records where each figure was read.

Units. GPU memory **capacities are binary**: a card sold as "80GB" holds about
80 GiB (HBM and GDDR come in power-of-two sizes), and the driver reports that in
MiB (``nvidia-smi`` shows 81920 MiB for an A100 80GB). ``HardwareSpec.mem_bytes``
is the capacity a program sees reported, in bytes; the vendor's label ("80GB")
is kept apart in ``HardwareSpec.mem_label``. Bandwidths are decimal (1 TB/s =
10**12 bytes/s). FLOP/s figures are **dense** (without 2:4 structured sparsity).

Students import this module; it holds facts, never the answers they compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .units import TB, GiB, MiB


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer, as far as the KV cache cares.

    ``n_kv_heads`` is the number of key/value heads (``= n_heads`` for MHA,
    fewer for GQA, 1 for MQA). ``dtype`` is the dtype the **weights** were
    released in; the cache dtype is a separate serving choice. For MLA models the
    cache holds a latent of ``mla_kv_lora_rank + mla_rope_dim`` elements per
    layer instead; their query/key heads are ``head_dim`` wide (no-RoPE part plus
    the RoPE part) and their value heads ``v_head_dim``. ``sliding_window`` is the
    attention window of the ``n_window_layers`` layers that use one (the others
    attend to the whole context).
    """

    name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int
    d_ff: int
    vocab_size: int
    max_seq_len: int
    dtype: str
    n_params: int | None
    attention: str  # "MHA", "GQA", "MQA" or "MLA"
    sources: tuple[str, ...]
    notes: str = ""
    mla_kv_lora_rank: int | None = None
    mla_rope_dim: int | None = None
    sliding_window: int | None = None
    n_window_layers: int = 0
    v_head_dim: int | None = None

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 for MHA)."""
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class HardwareSpec:
    """Memory and peak figures of an accelerator.

    ``mem_bytes`` is the memory capacity a program sees reported, in bytes (binary:
    ``nvidia-smi``'s ``memory.total`` where a measured figure is cited, otherwise the
    label read as GiB, which ``mem_measured=False`` records). ``mem_label`` is the
    vendor's label ("80GB"). Bandwidth is decimal bytes/s; FLOP/s are dense.
    """

    name: str
    mem_label: str
    mem_bytes: int
    mem_measured: bool
    mem_bandwidth: float  # bytes/s (decimal)
    peak_flops_fp16: float  # dense fp16/bf16 tensor FLOP/s
    peak_flops_fp32: float  # fp32 non-tensor FLOP/s
    peak_flops_fp8: float | None
    sources: tuple[str, ...]
    notes: str = ""

    @property
    def ridge_fp16(self) -> float:
        """Arithmetic intensity (FLOP/byte) where fp16 compute and memory take equal time."""
        return self.peak_flops_fp16 / self.mem_bandwidth


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

#: The course's own tiny GPT (Lab 01). Lab 00's formula must predict its cache to the byte.
MINIGPT = ModelSpec(
    name="MiniGPT", n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32, d_model=128, d_ff=512,
    vocab_size=256, max_seq_len=16384, dtype="fp32", n_params=787_584, attention="GQA",
    sources=("course",),
    notes="The course's own model (course_lib.minigpt): byte-level vocabulary, fp32, "
          "4 query heads sharing 2 KV heads.",
)

_MODELS: list[ModelSpec] = [
    MINIGPT,
    ModelSpec("GPT-2 small", 12, 12, 12, 64, 768, 3072, 50257, 1024, "fp16", 124_439_808, "MHA",
              ("M1", "M2"), "Released dtype not stated in its config (UNVERIFIED); fp16 assumed for serving."),
    ModelSpec("GPT-2 XL", 48, 25, 25, 64, 1600, 6400, 50257, 1024, "fp16", 1_557_611_200, "MHA",
              ("M2", "M3")),
    ModelSpec("Llama-2-7B", 32, 32, 32, 128, 4096, 11008, 32000, 4096, "fp16", 6_738_415_616, "MHA",
              ("M4", "M5")),
    ModelSpec("Llama-2-13B", 40, 40, 40, 128, 5120, 13824, 32000, 4096, "fp16", 13_015_864_320, "MHA",
              ("M4", "M6")),
    ModelSpec("Llama-2-70B", 80, 64, 8, 128, 8192, 28672, 32000, 4096, "fp16", 68_976_648_192, "GQA",
              ("M4", "M7"), "The real model: 8 query heads share each KV head."),
    ModelSpec("Llama-2-70B (MHA)", 80, 64, 64, 128, 8192, 28672, 32000, 4096, "fp16", 78_371_889_152,
              "MHA", ("M7",), "Hypothetical MHA variant used by the seed handout; not a released model."),
    ModelSpec("Llama-3-8B", 32, 32, 8, 128, 4096, 14336, 128256, 8192, "bf16", 8_030_261_248, "GQA",
              ("M8", "M9", "M10")),
    ModelSpec("Llama-3.1-70B", 80, 64, 8, 128, 8192, 28672, 128256, 131072, "bf16", 70_553_706_496,
              "GQA", ("M8", "M11")),
    ModelSpec("Mistral-7B", 32, 32, 8, 128, 4096, 14336, 32000, 32768, "bf16", 7_241_732_096, "GQA",
              ("M12", "M13"), "v0.1. Every layer has a sliding window of 4096 tokens (rolling-buffer "
              "cache); the paper says context 8192, the HF config 32768.", sliding_window=4096,
              n_window_layers=32),
    ModelSpec("Mixtral-8x7B", 32, 32, 8, 128, 4096, 14336, 32000, 32768, "bf16", 46_702_792_704, "GQA",
              ("M14",), "8 experts, top-2 routing; experts do not change the KV cache."),
    ModelSpec("GPT-3 175B", 96, 96, 96, 128, 12288, 49152, 50257, 2048, "fp16", 175_000_000_000, "MHA",
              ("M15",), "n_params is the paper's rounded 175.0B; vocab UNVERIFIED (GPT-2's)."),
    ModelSpec("Qwen2.5-7B", 28, 28, 4, 128, 3584, 18944, 152064, 131072, "bf16", 7_615_616_512, "GQA",
              ("M16",)),
    ModelSpec("Gemma-2-9B", 42, 16, 8, 256, 3584, 14336, 256000, 8192, "bf16", 9_241_705_984, "GQA",
              ("M17",), "head_dim 256 is explicit (not 3584/16 = 224). Layers alternate: 21 local "
              "layers with a 4096-token window, 21 global layers over the whole context.",
              sliding_window=4096, n_window_layers=21),
    ModelSpec("Falcon-7B", 32, 71, 1, 64, 4544, 18176, 65024, 2048, "bf16", 6_921_720_704, "MQA",
              ("M20",), "multi_query=true: one KV head; re-serialised configs say num_kv_heads 71, "
              "which transformers ignores."),
    ModelSpec("DeepSeek-V2", 60, 128, 128, 192, 5120, 12288, 102400, 163840, "bf16", 236_000_000_000,
              "MLA", ("M18", "P6", "M21", "M22"), "MLA: the cache holds a 512-dim latent + 64-dim RoPE "
              "key per layer (absorbed mode). Query/key heads are 192 wide (128 without RoPE + 64 "
              "RoPE), value heads 128. The config's num_key_value_heads=128 is not the cache size.",
              mla_kv_lora_rank=512, mla_rope_dim=64, v_head_dim=128),
    ModelSpec("DeepSeek-V3", 61, 128, 128, 192, 7168, 18432, 129280, 163840, "fp8", 671_000_000_000,
              "MLA", ("M19", "M21", "M22", "M24"), "MLA as V2 (Q/K heads 192, V heads 128); weights "
              "released in fp8, while DeepSeek's reference inference code keeps the cache in bf16; "
              "671B main model.",
              mla_kv_lora_rank=512, mla_rope_dim=64, v_head_dim=128),
]

#: Model specs by name.
MODELS: dict[str, ModelSpec] = {m.name: m for m in _MODELS}

#: DeepSeek LLM 67B, the dense GQA baseline of DeepSeek-V2's "93.3% smaller KV cache" [M23, P6].
#: Only the fields that size its cache are recorded (the fact sheet has no full configuration).
DEEPSEEK_67B_CACHE: dict[str, int] = {"n_layers": 95, "n_kv_heads": 8, "head_dim": 128}


# --------------------------------------------------------------------------------------------
# Hardware (dense peaks; capacities binary, as reported; bandwidths decimal)
# --------------------------------------------------------------------------------------------

_NOT_MEASURED = "Capacity: no measured figure in the fact sheet; the label is read as GiB."

_HARDWARE: list[HardwareSpec] = [
    HardwareSpec("A100 40GB SXM", mem_label="40GB", mem_bytes=40960 * MiB, mem_measured=True,
                 mem_bandwidth=1.555 * TB, peak_flops_fp16=312e12, peak_flops_fp32=19.5e12,
                 peak_flops_fp8=None, sources=("H1", "H2", "H16", "H18"),
                 notes="nvidia-smi reports 40960 MiB (= 40 GiB)."),
    HardwareSpec("A100 80GB SXM", mem_label="80GB", mem_bytes=81920 * MiB, mem_measured=True,
                 mem_bandwidth=2.039 * TB, peak_flops_fp16=312e12, peak_flops_fp32=19.5e12,
                 peak_flops_fp8=None, sources=("H2", "H3", "H7", "H16", "H17"),
                 notes="nvidia-smi reports 81920 MiB (= 80 GiB), 763 MiB of it reserved; "
                       "PyTorch's total_memory is 85,056,798,720 B. The PCIe card has 1.935 TB/s."),
    HardwareSpec("A100 80GB PCIe", mem_label="80GB", mem_bytes=80 * GiB, mem_measured=False,
                 mem_bandwidth=1.935 * TB, peak_flops_fp16=312e12, peak_flops_fp32=19.5e12,
                 peak_flops_fp8=None, sources=("H3", "H2"),
                 notes="Bandwidth from H3; compute taken equal to the SXM card (same GA100 peaks). "
                       + _NOT_MEASURED),
    HardwareSpec("H100 SXM", mem_label="80GB", mem_bytes=81559 * MiB, mem_measured=True,
                 mem_bandwidth=3.35 * TB, peak_flops_fp16=989e12, peak_flops_fp32=67e12,
                 peak_flops_fp8=1979e12, sources=("H4", "H5", "H7", "H16", "H17"),
                 notes="nvidia-smi reports 81559 MiB (79.65 GiB) for the H100 80GB HBM3, 454 MiB of "
                       "it reserved; CUDA's deviceQuery sees 85,045,477,376 B. Datasheet headline "
                       "1,979 TFLOPS bf16 is with sparsity; dense is 989."),
    HardwareSpec("H100 PCIe", mem_label="80GB", mem_bytes=80 * GiB, mem_measured=False,
                 mem_bandwidth=2.0 * TB, peak_flops_fp16=756e12, peak_flops_fp32=51e12,
                 peak_flops_fp8=1513e12, sources=("H4", "H6", "H7"), notes=_NOT_MEASURED),
    HardwareSpec("H200 SXM", mem_label="141GB", mem_bytes=143771 * MiB, mem_measured=True,
                 mem_bandwidth=4.8 * TB, peak_flops_fp16=989e12, peak_flops_fp32=67e12,
                 peak_flops_fp8=1979e12, sources=("H7", "H8", "H16"),
                 notes="nvidia-smi reports 143771 MiB (140.4 GiB). FP32 67 TFLOPS assumed equal to "
                       "H100 SXM (UNVERIFIED)."),
    HardwareSpec("L4", mem_label="24GB", mem_bytes=23034 * MiB, mem_measured=True,
                 mem_bandwidth=0.300 * TB, peak_flops_fp16=121e12, peak_flops_fp32=30.3e12,
                 peak_flops_fp8=242.5e12, sources=("H7", "H9", "H17"),
                 notes="nvidia-smi reports 23034 MiB (22.49 GiB, ECC on). Dense fp8 halved from the "
                       "sparse figure (UNVERIFIED)."),
    HardwareSpec("RTX 4090", mem_label="24GB", mem_bytes=24564 * MiB, mem_measured=True,
                 mem_bandwidth=1.008 * TB, peak_flops_fp16=165.2e12, peak_flops_fp32=82.6e12,
                 peak_flops_fp8=330.3e12, sources=("H7", "H10", "H17"),
                 notes="nvidia-smi reports 24564 MiB (23.99 GiB). Tensor FLOP/s with fp32 "
                       "accumulate; twice that with fp16 accumulate."),
    HardwareSpec("T4", mem_label="16GB", mem_bytes=16 * GiB, mem_measured=False,
                 mem_bandwidth=0.320 * TB, peak_flops_fp16=65e12, peak_flops_fp32=8.1e12,
                 peak_flops_fp8=None, sources=("H11",), notes="fp16 only (no bf16). " + _NOT_MEASURED),
    HardwareSpec("MI300X", mem_label="192GB", mem_bytes=192 * GiB, mem_measured=False,
                 mem_bandwidth=5.3 * TB, peak_flops_fp16=1307.4e12, peak_flops_fp32=163.4e12,
                 peak_flops_fp8=2614.9e12, sources=("H12", "H17"),
                 notes=_NOT_MEASURED + " HIP's device query prints 196592 'MB' of global memory (H17), "
                       "consistent with 192 GiB less 16 MiB if those are MiB."),
    HardwareSpec("Apple M2 (10-core GPU)", mem_label="24GB", mem_bytes=24 * GiB, mem_measured=False,
                 mem_bandwidth=0.100 * TB, peak_flops_fp16=3.578e12, peak_flops_fp32=3.578e12,
                 peak_flops_fp8=None, sources=("H13",),
                 notes="No tensor cores: fp16 and fp32 GPU rates are equal. Memory is 'up to' 24GB of "
                       "unified memory shared with the CPU. " + _NOT_MEASURED),
    HardwareSpec("TPU v5e", mem_label="16GB", mem_bytes=16 * GiB, mem_measured=False,
                 mem_bandwidth=0.819 * TB, peak_flops_fp16=197e12, peak_flops_fp32=float("nan"),
                 peak_flops_fp8=None, sources=("H14",),
                 notes="fp32 rate not published; a newer doc says 800 GiB/s (0.859 TB/s). " + _NOT_MEASURED),
]

#: Hardware specs by name.
HARDWARE: dict[str, HardwareSpec] = {h.name: h for h in _HARDWARE}

#: vLLM's default for the share of a GPU's reported memory its engine may use (weights,
#: activations and KV cache); the rest stays free for the CUDA context and other allocations [V1].
VLLM_GPU_MEMORY_UTILIZATION: float = 0.90


def usable_bytes(device: HardwareSpec, fraction: float = VLLM_GPU_MEMORY_UTILIZATION) -> int:
    """A memory budget on ``device``: ``fraction`` of the capacity it reports, in whole bytes.

    ``fraction`` is read as the decimal it is written as (0.9 is exactly 9/10), so the
    budget is exact: ``floor(device.mem_bytes * 9 / 10)`` for the default.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return math.floor(device.mem_bytes * Fraction(str(fraction)))


# --------------------------------------------------------------------------------------------
# Sources (keys as in the fact sheet)
# --------------------------------------------------------------------------------------------

SOURCES: dict[str, str] = {
    "course": "This course: course_lib.minigpt defines the model with this configuration.",
    "M1": "huggingface/transformers models/gpt2/configuration_gpt2.py (GPT2Config defaults = openai-community/gpt2)",
    "M2": "karpathy/nanoGPT model.py (gpt2: 12/12/768, 124M; gpt2-xl: 48/25/1600, 1558M)",
    "M3": "huggingface.co/openai-community/gpt2-xl config.json",
    "M4": "meta-llama/llama-models models/llama2/MODEL_CARD.md (7B/13B no GQA, 70B GQA, 4k context)",
    "M5": "Llama-2-7B HF config copy (TheBloke/Llama-2-7B-fp16 config.json)",
    "M6": "Llama-2-13B HF config copy (NousResearch/Llama-2-13b-chat-hf config.json)",
    "M7": "Llama-2-70B HF config copy (TheBloke/Llama-2-70B-fp16 config.json): 8 KV heads",
    "M8": "meta-llama/llama-models models/sku_list.py (Llama 3 model_args)",
    "M9": "meta-llama/llama-models models/llama3/MODEL_CARD.md (GQA for all models, 8k sequences)",
    "M10": "Llama-3-8B HF config copies (_name_or_path meta-llama/Meta-Llama-3-8B)",
    "M11": "Llama-3.1-70B HF config copies",
    "M12": "Mistral-7B-v0.1 HF config copies (sliding_window 4096)",
    "M13": "Mistral 7B paper, Table 1 and the rolling-buffer cache section",
    "M14": "mistralai/Mixtral-8x7B-Instruct-v0.1 config.json",
    "M15": "GPT-3 paper (Brown et al. 2020) Table 2.1: 96 layers, d_model 12288, 96 heads, d_head 128",
    "M16": "Qwen2.5-7B HF config copies",
    "M17": "google/gemma-2-9b config copies; transformers configuration_gemma2.py",
    "M18": "deepseek-ai/DeepSeek-V3 inference/configs/config_236B.json (DeepSeek-V2 architecture)",
    "M19": "deepseek-ai/DeepSeek-V3 inference/configs/config_671B.json and README",
    "M20": "tiiuae/falcon-7b config copy; transformers modeling_falcon.py (multi_query -> 1 KV head)",
    "M21": "huggingface/transformers models/deepseek_v3/modeling_deepseek_v3.py (eager mode caches per-head "
           "K of 128 + 64 = 192 and V of 128)",
    "M22": "deepseek-ai/DeepSeek-V3 inference/model.py (absorb mode caches kv_lora_rank + rope dims)",
    "M23": "deepseek-ai/deepseek-llm-67b-base config copy (Vivacem/DeepSeek-67B-MMIQC config.json): 95 layers, "
           "64 heads, 8 KV heads, hidden 8192 (d_h 128), bfloat16",
    "M24": "deepseek-ai/DeepSeek-V3 inference/generate.py @1c6947e6 (torch.set_default_dtype(torch.bfloat16): "
           "the kv_cache and pe_cache buffers are bf16 while the weights are fp8)",
    "P6": "DeepSeek-V2 technical report, section 2.1 and Appendix D",
    "H1": "NVIDIA A100 40GB datasheet table (Paderborn University PC2 wiki copy)",
    "H2": "glennklockwood.com A100 page (footnoted to NVIDIA's datasheet)",
    "H3": "thundercompute A100 specs guide (bandwidth per variant)",
    "H4": "NVIDIA H100 table (reseller copy; '* with sparsity, 1/2 lower without')",
    "H5": "glennklockwood.com H100 page (989.4 dense bf16 computed from clocks)",
    "H6": "NVIDIA H100 PCIe product brief PB-11133-001_v02",
    "H7": "karpathy/nanochat harness/runtime.py (dense bf16 peaks and bandwidths)",
    "H8": "NVIDIA H200 spec quotes (141 GB HBM3e, 4.8 TB/s)",
    "H9": "NVIDIA L4 third-party spec pages",
    "H10": "RTX 4090 third-party spec pages (1,008 GB/s; 82.6 FP32)",
    "H11": "NVIDIA T4 third-party spec pages",
    "H12": "AMD ROCm docs mi300.md (MI300X peaks, 5.3 TB/s)",
    "H13": "Apple M2 announcement (100 GB/s) and third-party FP32 figures",
    "H14": "Google Cloud TPU v5e docs",
    "H16": "nvidia-smi memory.total as printed in public logs (fact sheet, Conventions): A100 40GB 40960 MiB, "
           "A100 80GB 81920 MiB, H100 80GB HBM3 81559 MiB, H200 143771 MiB; torch total_memory of an "
           "A100-SXM4-80GB 85,056,798,720 B",
    "H17": "thamada/nvidia-smi captured outputs: gls/A100SXMx4_smi.py @b09ef139 (A100-SXM4-80GB 81920 MiB, "
           "763 reserved), nvsim/H100SXMx8_smi.py and H100SXMx8_deviceQuery.py @03fbe6e6 (H100 80GB HBM3 "
           "81559 MiB, 454 reserved; CUDA 85,045,477,376 B), gls/L4_smi.py @b09ef139 (L4 23034 MiB), "
           "package/RTX4090_smi.py @6f38a715 (RTX 4090 24564 MiB), nvsim/MI300X_x4_deviceQuery.py "
           "@a296cf1d (MI300X 196592 'MB')",
    "H18": "Slusheeking/nextgen docs/SYSTEM_HARDWARE.md (nvidia-smi: A100-SXM4-40GB 40960 MiB)",
    "V1": "vllm-project/vllm vllm/engine/arg_utils.py @001999d2 (EngineArgs.gpu_memory_utilization = 0.90: "
          "the share of GPU memory the engine may use for weights, activations and cache; "
          "kv_cache_dtype 'auto' = the model's dtype, or fp8)",
}


def model(name: str) -> ModelSpec:
    """Look up a model by name, with a helpful error listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def hardware(name: str) -> HardwareSpec:
    """Look up a device by name, with a helpful error listing the known names."""
    try:
        return HARDWARE[name]
    except KeyError:
        raise KeyError(f"unknown device {name!r}; known devices: {', '.join(HARDWARE)}") from None


def models_table():  # -> pandas.DataFrame
    """All model specs as a pandas DataFrame (one row per model); ``dtype`` is the weights' dtype."""
    import pandas as pd

    rows = [{"model": m.name, "L": m.n_layers, "H": m.n_heads, "H_kv": m.n_kv_heads,
             "d_h": m.head_dim, "d_v": m.v_head_dim or m.head_dim, "d_model": m.d_model,
             "window": f"{m.sliding_window} on {m.n_window_layers} of {m.n_layers} layers"
             if m.sliding_window else "", "attention": m.attention, "weight dtype": m.dtype,
             "n_params": m.n_params, "max_seq_len": m.max_seq_len, "sources": ", ".join(m.sources)}
            for m in _MODELS]
    return pd.DataFrame(rows).set_index("model")


def hardware_table():  # -> pandas.DataFrame
    """All hardware specs as a pandas DataFrame, in human units (GiB, TB/s, TFLOP/s)."""
    import pandas as pd

    rows = [{"device": h.name, "memory label": h.mem_label, "memory (GiB)": round(h.mem_bytes / GiB, 2),
             "measured": h.mem_measured, "bandwidth (TB/s)": h.mem_bandwidth / TB,
             "fp16/bf16 dense (TFLOP/s)": h.peak_flops_fp16 / 1e12, "fp32 (TFLOP/s)": h.peak_flops_fp32 / 1e12,
             "ridge fp16 (FLOP/B)": round(h.ridge_fp16, 1), "sources": ", ".join(h.sources)}
            for h in _HARDWARE]
    return pd.DataFrame(rows).set_index("device")
