"""Qwen3.5 on its tiny offline checkpoint: what the family adds to the checks every family gets in
tests/test_families.py - the hybrid language model (Gated-DeltaNet linear-attention layers and gated full
attention) and LoRA on both kinds, prompts that close the thinking block, the cached-feature fast path, 4-bit
on CPU, name resolution that leaves the MoE models out, and the published specs with their layer types."""

import pytest
import torch

from uivlm_helpers.families import get_family
from uivlm_helpers.families.registry import family_name_for
from uivlm_helpers.models import model_configs
from uivlm_helpers.models.wrapper import VLMWrapper
from uivlm_helpers.training import features
from uivlm_helpers.training.collate import UICollator
from uivlm_helpers.training.features import CachedFeaturesCollator, build_cache, install_feature_hook

NAME = "uivlm/tiny-qwen3.5"
FULL = ("q_proj", "k_proj", "v_proj", "o_proj")
LINEAR = ("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _adapted(model) -> dict[str, set[str]]:
    """Per layer kind, the leaf names of the language model's layers that carry a LoRA adapter."""
    from peft.tuners.lora import LoraLayer

    found = {"linear_attention": set(), "full_attention": set()}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and "language_model.layers." in name:
            kind = "linear_attention" if ".linear_attn." in name else "full_attention" if ".self_attn." in name \
                else "mlp"
            found.setdefault(kind, set()).add(name.rsplit(".", 1)[-1])
    return found


def test_tiny_model_is_hybrid():
    agent = VLMWrapper(NAME)
    text = agent.model.config.text_config
    assert text.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    layers = agent.model.model.language_model.layers
    assert [type(getattr(layer, "linear_attn", None) or layer.self_attn).__name__ for layer in layers] == \
        ["Qwen3_5GatedDeltaNet"] * 3 + ["Qwen3_5Attention"]
    # The gated full attention: q_proj gives the query and its output gate.
    attention = layers[3].self_attn
    assert attention.q_proj.out_features == 2 * text.num_attention_heads * text.head_dim


def test_lora_adapts_both_layer_kinds_and_every_adapter_gets_a_gradient(screens):
    agent = VLMWrapper(NAME, use_lora=True, lora_config={"r": 4})
    agent.freeze_vision_encoder()
    adapted = _adapted(agent.model)
    assert adapted["linear_attention"] == set(LINEAR) and adapted["full_attention"] == set(FULL)
    assert adapted["mlp"] == set(MLP)
    loss = agent.forward([s["image"] for s in screens[:2]], [s["instruction"] for s in screens[:2]],
                         [s["action"] for s in screens[:2]])["loss"]
    loss.backward()
    grads = {n: p.grad for n, p in agent.model.named_parameters() if "lora_B" in n}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values()), \
        [n for n, g in grads.items() if g is None or g.abs().sum() == 0]


def test_prompts_close_the_thinking_block_so_the_answer_is_the_action():
    agent = VLMWrapper(NAME)
    prompt = agent.prompt_text("Click the Save button.")
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # The template's default (thinking on) would open the block instead: the adapter asks for it closed.
    thinking = agent.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}],
        add_generation_prompt=True, tokenize=False)
    assert thinking.endswith("<|im_start|>assistant\n<think>\n")
    target = "click(500, 656)"
    answer = agent.adapter.answer_token_ids(agent.processor.tokenizer, prompt, target)
    assert agent.processor.tokenizer.decode(answer) == target + "<|im_end|>"
    # <think> / </think> are ordinary tokens: an answer that thinks anyway keeps them when decoded.
    think = agent.processor.tokenizer.convert_tokens_to_ids("<think>")
    assert think not in agent.processor.tokenizer.all_special_ids


def test_cached_features_equal_the_plain_forward(screens, tmp_path):
    agent = VLMWrapper(NAME, use_lora=True, lora_config={"r": 4})
    agent.freeze_vision_encoder()
    records = screens[:2]
    cache = build_cache(agent, records, tmp_path / "cache", progress=False)
    install_feature_hook(agent.model)
    plain_batch = UICollator(agent)(records)
    cached_batch = CachedFeaturesCollator(agent, cache)(records)
    hidden = agent.model.get_input_embeddings().weight.shape[-1]
    assert cached_batch[features.FEATURES_KEY].shape[-1] == hidden  # no DeepStack: the merger's output only

    def loss_and_grads(batch):
        agent.model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        loss = agent.model(**batch).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in agent.model.named_parameters() if p.requires_grad}

    (plain, plain_grads), (cached, cached_grads) = loss_and_grads(plain_batch), loss_and_grads(cached_batch)
    assert cached == pytest.approx(plain, rel=1e-6)
    for name in plain_grads:
        torch.testing.assert_close(cached_grads[name], plain_grads[name], rtol=1e-5, atol=1e-7)


def test_qlora_4bit_forward_backward_on_cpu(screens):
    import bitsandbytes as bnb

    agent = VLMWrapper(NAME, load_in_4bit=True, use_lora=True, lora_config={"r": 4})
    quantized = {n.removesuffix(".base_layer").rsplit(".", 1)[-1] for n, m in agent.model.named_modules()
                 if isinstance(m, bnb.nn.Linear4bit)}
    assert set(LINEAR) | set(FULL) | set(MLP) <= quantized  # the Gated-DeltaNet projections too
    # Predicting first, then training: on a CPU with AVX512-BF16, bitsandbytes would repack the weights for
    # inference (refusing the per-head projections, whose widths are not multiples of 32) and later
    # backpropagate through a kernel without gradients; the wrapper keeps the trainable layout.
    prediction = agent.predict([screens[0]["image"]], [screens[0]["instruction"]])[0]
    assert prediction.raw_text is not None
    loss = agent.forward([screens[0]["image"]], [screens[0]["instruction"]], [screens[0]["action"]])["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for n, p in agent.model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-2B-Base", "someone/qwen3.5-4b-ui-agent"])
def test_names_resolve_to_the_family(name):
    assert family_name_for(name) == "qwen3_5"


def test_moe_models_are_not_taken_for_the_dense_family(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the model family"):
        family_name_for("Qwen/Qwen3.5-35B-A3B")
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_5_moe"}')
    with pytest.raises(ValueError, match="model_type 'qwen3_5_moe'"):
        family_name_for(str(tmp_path))


def test_published_specs_count_the_real_class_and_group_the_layer_kinds():
    plugin = get_family("qwen3_5")
    for name in plugin.published:
        spec = model_configs.published_config(name)
        assert spec["sources"] and spec["image_tokens"]["factor"] == 32
        assert model_configs.count_parameters_meta(name) == spec["params"], name
    spec = model_configs.published_config("Qwen/Qwen3.5-9B")
    groups = {g["group"]: g for g in spec["lora"]}
    # 32 layers, every fourth full attention: 24 Gated-DeltaNet + 8 gated-attention layers.
    assert (groups["linear_attention"]["layers"], groups["full_attention"]["layers"]) == (24, 8)
    assert groups["full_attention"]["modules"]["q_proj"] == [4096, 2 * 16 * 256]
    assert groups["linear_attention"]["modules"]["in_proj_qkv"] == [4096, 2 * 16 * 128 + 32 * 128]


def test_tiny_spec_reads_the_checkpoint():
    spec = model_configs.architecture_spec(NAME)
    assert spec["family"] == "qwen3_5" and spec["text"]["layer_types"][-1] == "full_attention"
    assert spec["image_tokens"]["factor"] == 32 and spec["vision"]["deepstack_visual_indexes"] == []
