"""Shared parts of the benchmarks: machine + versions, JSON results, synthetic screens, full-size models.

Full-size models are built from :func:`uivlm_helpers.models.model_configs.build_config` with random weights (no
download), once per process, and handed to the workbook's own code through :class:`FullSizeWrapper`, a
:class:`~uivlm_helpers.models.wrapper.VLMWrapper` whose loaders return the prebuilt model and a processor made
offline: Qwen2-VL's image processor with the published pixel budget (3,136 - 12,845,056 pixels) and a
byte-level BPE tokenizer trained here on the workbook's prompts (4,000 tokens, so the workbook's prompt
takes about as many tokens as Qwen's own tokenizer gives it). The model's vocabulary stays the published
one (151,936 for 2B): logits, embeddings and the output head have their real size. The config's
special-token ids are pointed at this tokenizer's ids, so M-RoPE positions and image-token placement are
computed by the real model code.

So a benchmark sees what the workbook sees: ``VLMWrapper.from_config`` (LoRA targets, frozen tower,
QLoRA's ``prepare_model_for_kbit_training``), ``train.UICollator`` / ``train.build_trainer``, and
``wrapper.predict``; only the weights are random.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RESULTS_DIR = ROOT / "bench" / "results"
SCREEN = (1288, 728)                       # the H100 anchor's screenshot: 4,784 patches, 1,196 image tokens
PUBLISHED_PIXELS = {"shortest_edge": 3136, "longest_edge": 12845056}  # Qwen2-VL's preprocessor_config
GIB = 2 ** 30
PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "liger-kernel", "trl", "datasets", "tokenizers",
            "pillow", "numpy")
QWEN_2B = "Qwen/Qwen2-VL-2B-Instruct"
QWEN_7B = "Qwen/Qwen2-VL-7B-Instruct"
LLAVA_13B = "llava-hf/llava-1.5-13b-hf"
SHORT = {QWEN_2B: "Qwen2-VL-2B", QWEN_7B: "Qwen2-VL-7B", LLAVA_13B: "LLaVA-1.5-13B",
         "uivlm/tiny-qwen2-vl": "tiny-qwen2-vl"}


# -- machine, versions, results ------------------------------------------------------------------------
def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(), "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1),
                    gpu_count=torch.cuda.device_count())
    return info


def device_kind(device: str) -> str:
    return "gpu" if device.startswith("cuda") else "cpu"


def results_path(benchmark: str, device: str, out_dir: str | Path | None = None) -> Path:
    """``bench/results/<benchmark>_<cpu|gpu>.json`` (or under ``out_dir`` / ``$BENCH_OUT``)."""
    folder = Path(out_dir or os.environ.get("BENCH_OUT") or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{benchmark}_{device_kind(device)}.json"


class Results:
    """A results file rewritten after every row, so a run cut short still leaves what it measured."""

    def __init__(self, path: Path, benchmark: str, command: str, **header):
        self.path = Path(path)
        self.data = {"benchmark": benchmark, "command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "machine": machine(), "versions": versions(), **header, "rows": [], "notes": []}
        self.save()

    def add(self, row: dict) -> dict:
        self.data["rows"].append(row)
        self.save()
        return row

    def note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.data["notes"].append(text)
        self.save()

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=_jsonable) + "\n")
        tmp.replace(self.path)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value and abs(value) < 0.1 and digits <= 2:
            return f"{value:.4f}"
        return f"{value:.{digits}f}"
    return str(value)


def print_table(rows: list[dict], columns: list[tuple[str, str]], title: str | None = None) -> str:
    """A markdown table of ``rows`` (``columns``: (key, header)); printed and returned."""
    lines = ([f"\n{title}\n"] if title else []) + ["| " + " | ".join(h for _, h in columns) + " |",
                                                  "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k)) for k, _ in columns) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def median(values):
    return statistics.median(values) if values else None


# -- data --------------------------------------------------------------------------------------------
def synthetic_records(n: int, folder: str | Path, size=SCREEN, seed: int = 0) -> list[dict]:
    """``n`` synthetic UI screens of ``size`` (PNG files) with instruction and target action."""
    from uivlm_helpers.data import schema, synth
    from uivlm_helpers.data.run_data import as_plain

    jsonl = synth.generate_records(n, seed=seed, out_dir=folder, image_size=tuple(size))
    return [as_plain(r) for r in schema.read_records(jsonl)]


# -- offline processor for full-size Qwen2-VL --------------------------------------------------------
_QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>", "<|box_start|>", "<|box_end|>"]
BENCH_VOCAB = 4000


def _tokenizer_corpus() -> list[str]:
    """The workbook's prompt text (every format and coordinate hint) and synthetic instructions."""
    from uivlm_helpers.core.config import DEFAULT_TASK_PROMPT
    from uivlm_helpers.core.prompts import COORDINATE_HINTS, FORMAT_HINTS
    from uivlm_helpers.data import synth
    from uivlm_helpers.families import tinybuild

    lines = tinybuild.TOKENIZER_CORPUS.split("\n")
    lines += ["You are a helpful assistant."] + list(FORMAT_HINTS.values()) + list(COORDINATE_HINTS.values())
    lines += [DEFAULT_TASK_PROMPT]
    for name in dir(synth):  # word lists of the synthetic screens (labels, instructions)
        if name == "__path__":  # synth is a package: its __path__ is a list of folders, not words
            continue
        value = getattr(synth, name)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            lines += list(value)
    return lines * 20


def bench_tokenizer():
    """A Qwen2 byte-level BPE tokenizer (4,000 tokens) with Qwen's special tokens and chat template."""
    import json as _json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    from uivlm_helpers.models.tiny import QWEN2_VL_CHAT_TEMPLATE

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=BENCH_VOCAB, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_tokenizer_corpus(), trainer)
    model = _json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": _QWEN_SPECIAL[1:]})
    tokenizer.add_tokens([_QWEN_SPECIAL[0]], special_tokens=True)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tokenizer


def bench_processor():
    """``Qwen2VLProcessor``: the published image processor settings + :func:`bench_tokenizer`."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    from uivlm_helpers.models.tiny import QWEN2_VL_CHAT_TEMPLATE

    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(size=dict(PUBLISHED_PIXELS)),
                            video_processor=Qwen2VLVideoProcessor(size=dict(PUBLISHED_PIXELS)),
                            tokenizer=bench_tokenizer(), chat_template=QWEN2_VL_CHAT_TEMPLATE)


# -- full-size models ----------------------------------------------------------------------------------
def build_full_model(name: str, processor, device: str = "cuda", dtype: str = "bfloat16",
                     text_layers: int | None = None, vision_depth: int | None = None):
    """The published architecture with random weights on ``device`` (special ids -> the bench tokenizer).

    ``text_layers`` / ``vision_depth`` shrink the depth (full widths and vocabulary) for CPU rehearsals.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    from uivlm_helpers.models.model_configs import build_config

    config = build_config(name)
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIAL}
    for key, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                       ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
        setattr(config, key, ids[token])
    text = config.text_config
    text.bos_token_id, text.eos_token_id, text.pad_token_id = ids["<|endoftext|>"], ids["<|im_end|>"], ids["<|endoftext|>"]
    if text_layers:
        text.num_hidden_layers = text_layers
        if getattr(text, "layer_types", None):
            text.layer_types = text.layer_types[:text_layers]
        if getattr(text, "max_window_layers", None):
            text.max_window_layers = min(text.max_window_layers, text_layers)
    if vision_depth:
        config.vision_config.depth = vision_depth
    torch_dtype = getattr(torch, dtype)
    start = time.perf_counter()
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch_dtype, attn_implementation="sdpa")
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    sync(device)
    model._bench_build_s = time.perf_counter() - start
    return model


def quantize_4bit(model, device: str):
    """The same model loaded 4-bit the way the workbook loads it (``wrapper.quantization_config``:
    NF4, double quant, bf16 compute, vision tower and lm_head skipped), through ``from_pretrained``
    with the bf16 model's state dict, so transformers' bitsandbytes quantizer does the work."""
    import torch

    from uivlm_helpers.families import QWEN2_VL
    from uivlm_helpers.models.wrapper import quantization_config

    compute = torch.bfloat16 if device.startswith("cuda") else torch.float32
    qc = quantization_config(load_in_4bit=True, compute_dtype=compute, skip_modules=QWEN2_VL.vision_module_prefixes)
    state = {k: v for k, v in model.state_dict().items()}
    start = time.perf_counter()
    kwargs = {"quantization_config": qc, "dtype": model.dtype, "device_map": {"": device},
              "attn_implementation": "sdpa"}
    try:
        quantized = type(model).from_pretrained(None, config=model.config, state_dict=state, **kwargs)
    except (TypeError, ValueError, OSError) as error:  # a transformers without state_dict loading
        import tempfile

        print(f"quantize_4bit: state_dict loading failed ({error}); going through a saved copy", flush=True)
        del state
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder, safe_serialization=True)
            quantized = type(model).from_pretrained(folder, **kwargs)
    quantized.generation_config = model.generation_config
    sync(device)
    quantized._bench_build_s = time.perf_counter() - start
    return quantized


def _wrapper_class():
    from uivlm_helpers.models.wrapper import VLMWrapper

    class FullSizeWrapper(VLMWrapper):
        """``VLMWrapper`` over a prebuilt model: :attr:`models` maps "bf16" / "4bit" to a base model."""

        models: dict = {}
        processor_obj = None

        def _load_processor(self, path, min_pixels, max_pixels):
            import copy

            processor = type(self).processor_obj
            if min_pixels is not None or max_pixels is not None:  # keep the shared one's budget intact
                processor = copy.deepcopy(processor)
            return self.adapter.configure_processor(processor, min_pixels, max_pixels)

        def _load_model(self, path, load_in_8bit, load_in_4bit):
            if load_in_8bit:
                raise ValueError("FullSizeWrapper: 8-bit is not benchmarked")
            key = "4bit" if load_in_4bit else "bf16"
            model = type(self).models[key]
            self.quantized = load_in_4bit
            if not load_in_4bit:  # a previous LoRA wrap froze everything; a full fine-tune trains it all
                for param in model.parameters():
                    param.requires_grad_(True)
            return model

    return FullSizeWrapper


_FULL_SIZE = None


def full_size_wrapper_class(processor, models: dict):
    global _FULL_SIZE
    if _FULL_SIZE is None:
        _FULL_SIZE = _wrapper_class()
    _FULL_SIZE.processor_obj = processor
    _FULL_SIZE.models = models
    return _FULL_SIZE


def snapshot_hooks(model) -> dict:
    return {id(m): (m, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()}


def restore_base(wrapper, hooks: dict) -> None:
    """Undo one configuration on the shared base: LoRA removed (``unload``), checkpointing off, hooks
    that ``build_trainer`` / the Trainer added (input-grad hooks) removed."""
    from peft import PeftModel

    model = wrapper.model
    if isinstance(model, PeftModel):
        model = model.unload()
    try:
        model.gradient_checkpointing_disable()
    except Exception:  # noqa: BLE001 - not every model supports it
        pass
    for module, forward, pre in hooks.values():
        module._forward_hooks.clear()
        module._forward_hooks.update(forward)
        module._forward_pre_hooks.clear()
        module._forward_pre_hooks.update(pre)
    for param in model.parameters():
        param.grad = None
    wrapper.model = model


def run_config(name: str, device: str, dtype: str = "bfloat16", **settings):
    """The workbook's default run configuration for ``name`` on ``device`` with overrides whose keyword
    names spell dotted keys with ``__`` (``training__batch_size=1`` is ``training.batch_size``), set and
    validated together by :meth:`RunConfig.set_many` like a YAML file's values."""
    from uivlm_helpers.core.config import RunConfig

    config = RunConfig()
    width, height = SCREEN
    config.set_many({"model.name": name, "model.device": device, "model.torch_dtype": dtype,
                     "data.image_width": width, "data.image_height": height,
                     **{key.replace("__", "."): value for key, value in settings.items()}})
    return config
