"""The course's one table of facts: model configurations and hardware figures.

Every number carries a source key; the keys are explained in ``SOURCES`` and
come from the course's fact sheet (``shared/facts/FACTS.md`` in the course
repository), which records where each figure was read. Memory sizes and
bandwidths are decimal (vendor GB = 10**9 bytes, TB/s = 10**12 bytes/s);
FLOP/s figures are **dense** (without 2:4 structured sparsity).

Students import this module; it holds facts, never the answers they compute.
"""

from __future__ import annotations

from dataclasses import dataclass

from .units import GB, TB


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer, as far as the KV cache cares.

    ``n_kv_heads`` is the number of key/value heads (``= n_heads`` for MHA,
    fewer for GQA, 1 for MQA). For MLA models the cache holds a latent of
    ``mla_kv_lora_rank + mla_rope_dim`` elements per layer instead.
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

    @property
    def group_size(self) -> int:
        """Query heads per KV head (1 for MHA)."""
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class HardwareSpec:
    """Peak figures of an accelerator. Bytes and bytes/s are decimal; FLOP/s are dense."""

    name: str
    mem_bytes: int
    mem_bandwidth: float  # bytes/s
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
              ("M12", "M13"), "v0.1. Sliding window 4096 (rolling-buffer cache); the paper says "
              "context 8192, the HF config 32768.", sliding_window=4096),
    ModelSpec("Mixtral-8x7B", 32, 32, 8, 128, 4096, 14336, 32000, 32768, "bf16", 46_702_792_704, "GQA",
              ("M14",), "8 experts, top-2 routing; experts do not change the KV cache."),
    ModelSpec("GPT-3 175B", 96, 96, 96, 128, 12288, 49152, 50257, 2048, "fp16", 175_000_000_000, "MHA",
              ("M15",), "n_params is the paper's rounded 175.0B; vocab UNVERIFIED (GPT-2's)."),
    ModelSpec("Qwen2.5-7B", 28, 28, 4, 128, 3584, 18944, 152064, 131072, "bf16", 7_615_616_512, "GQA",
              ("M16",)),
    ModelSpec("Gemma-2-9B", 42, 16, 8, 256, 3584, 14336, 256000, 8192, "bf16", 9_241_705_984, "GQA",
              ("M17",), "head_dim 256 is explicit (not 3584/16 = 224). Alternating local "
              "(window 4096) and global layers.", sliding_window=4096),
    ModelSpec("Falcon-7B", 32, 71, 1, 64, 4544, 18176, 65024, 2048, "bf16", 6_921_720_704, "MQA",
              ("M20",), "multi_query=true: one KV head; re-serialised configs say num_kv_heads 71, "
              "which transformers ignores."),
    ModelSpec("DeepSeek-V2", 60, 128, 128, 128, 5120, 12288, 102400, 163840, "bf16", 236_000_000_000,
              "MLA", ("M18", "P6", "M22"), "MLA: the cache holds a 512-dim latent + 64-dim RoPE key "
              "per layer (absorbed mode). The config's num_key_value_heads=128 is not the cache size.",
              mla_kv_lora_rank=512, mla_rope_dim=64),
    ModelSpec("DeepSeek-V3", 61, 128, 128, 128, 7168, 18432, 129280, 163840, "fp8", 671_000_000_000,
              "MLA", ("M19", "M22"), "MLA as V2; weights released in fp8; 671B main model.",
              mla_kv_lora_rank=512, mla_rope_dim=64),
]

#: Model specs by name.
MODELS: dict[str, ModelSpec] = {m.name: m for m in _MODELS}


# --------------------------------------------------------------------------------------------
# Hardware (dense peaks; decimal bytes)
# --------------------------------------------------------------------------------------------

_HARDWARE: list[HardwareSpec] = [
    HardwareSpec("A100 40GB SXM", 40 * GB, 1.555 * TB, 312e12, 19.5e12, None, ("H1", "H2")),
    HardwareSpec("A100 80GB SXM", 80 * GB, 2.039 * TB, 312e12, 19.5e12, None, ("H2", "H3", "H7"),
                 "The A100 80GB PCIe has 1.935 TB/s."),
    HardwareSpec("H100 SXM", 80 * GB, 3.35 * TB, 989e12, 67e12, 1979e12, ("H4", "H5", "H7"),
                 "Datasheet headline 1,979 TFLOPS bf16 is with sparsity; dense is 989."),
    HardwareSpec("H100 PCIe", 80 * GB, 2.0 * TB, 756e12, 51e12, 1513e12, ("H4", "H6", "H7")),
    HardwareSpec("H200 SXM", 141 * GB, 4.8 * TB, 989e12, 67e12, 1979e12, ("H7", "H8"),
                 "FP32 67 TFLOPS assumed equal to H100 SXM (UNVERIFIED)."),
    HardwareSpec("L4", 24 * GB, 0.300 * TB, 121e12, 30.3e12, 242.5e12, ("H7", "H9"),
                 "Dense fp8 halved from the sparse figure (UNVERIFIED)."),
    HardwareSpec("RTX 4090", 24 * GB, 1.008 * TB, 165.2e12, 82.6e12, 330.3e12, ("H7", "H10"),
                 "Tensor FLOP/s with fp32 accumulate; twice that with fp16 accumulate."),
    HardwareSpec("T4", 16 * GB, 0.320 * TB, 65e12, 8.1e12, None, ("H11",), "fp16 only (no bf16)."),
    HardwareSpec("MI300X", 192 * GB, 5.3 * TB, 1307.4e12, 163.4e12, 2614.9e12, ("H12",)),
    HardwareSpec("Apple M2 (10-core GPU)", 24 * GB, 0.100 * TB, 3.578e12, 3.578e12, None, ("H13",),
                 "No tensor cores: fp16 and fp32 GPU rates are equal. Memory is 'up to' 24 GB."),
    HardwareSpec("TPU v5e", 16 * GB, 0.819 * TB, 197e12, float("nan"), None, ("H14",),
                 "fp32 rate not published; a newer doc says 800 GiB/s (0.859 TB/s)."),
]

#: Hardware specs by name.
HARDWARE: dict[str, HardwareSpec] = {h.name: h for h in _HARDWARE}


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
    "M22": "deepseek-ai/DeepSeek-V3 inference/model.py (absorb mode caches kv_lora_rank + rope dims)",
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
    """All model specs as a pandas DataFrame (one row per model)."""
    import pandas as pd

    rows = [{"model": m.name, "L": m.n_layers, "H": m.n_heads, "H_kv": m.n_kv_heads,
             "d_h": m.head_dim, "d_model": m.d_model, "attention": m.attention, "dtype": m.dtype,
             "n_params": m.n_params, "max_seq_len": m.max_seq_len, "sources": ", ".join(m.sources)}
            for m in _MODELS]
    return pd.DataFrame(rows).set_index("model")


def hardware_table():  # -> pandas.DataFrame
    """All hardware specs as a pandas DataFrame, in human units (GB, TB/s, TFLOP/s)."""
    import pandas as pd

    rows = [{"device": h.name, "memory (GB)": h.mem_bytes / GB, "bandwidth (TB/s)": h.mem_bandwidth / TB,
             "fp16/bf16 dense (TFLOP/s)": h.peak_flops_fp16 / 1e12, "fp32 (TFLOP/s)": h.peak_flops_fp32 / 1e12,
             "ridge fp16 (FLOP/B)": round(h.ridge_fp16, 1), "sources": ", ".join(h.sources)}
            for h in _HARDWARE]
    return pd.DataFrame(rows).set_index("device")
