"""LoRA lands on the LLM's linear layers only, merges exactly and loads back."""
import torch
from mmengine.config import Config

from mmllava.models import find_linear_names, merge_lora
from mmllava.registry import MODELS
from mmllava.utils import register_all_modules

LORA_CFG = 'configs/llava/llava-tiny_lora.py'


def build_lora(seed=0, **lora):
    register_all_modules()
    cfg = Config.fromfile(LORA_CFG)
    cfg.model.lora.update(lora)
    torch.manual_seed(seed)
    return MODELS.build(cfg.model)


def randomize_adapters(model):
    # lora_B starts at zero (the adapter is a no-op): make it count.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'lora_' in name:
                p.normal_(0, 0.05)


def test_adapters_only_in_llm_linears():
    model = build_lora()
    lora_names = [n for n, _ in model.named_parameters() if 'lora_' in n]
    assert lora_names
    assert all(n.startswith('llm.') for n in lora_names), lora_names
    assert not any('vision_tower' in n or n.startswith('projector') for n in lora_names)
    # Every LLM linear but the LM head has an adapter; the CLIP attention (which has q_proj,
    # k_proj, v_proj too) has none.
    targeted = {n.split('.lora_')[0].rsplit('.', 1)[-1] for n in lora_names}
    assert targeted == {'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj',
                        'down_proj'}
    assert 'q_proj' in find_linear_names(model.vision_tower)  # the trap exists
    assert not any('lora' in n for n, _ in model.vision_tower.named_modules())
    assert 'lm_head' not in targeted
    # Trainable: adapters + projector; the base LLM and the vision tower are frozen.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_names) | {n for n, _ in model.named_parameters()
                                           if n.startswith('projector.')}


def test_leaf_name_targeting_on_whole_model_would_hit_clip():
    """The original's way (leaf names over the whole model) puts LoRA in CLIP: issue 1647."""
    from peft import LoraConfig, get_peft_model
    base = MODELS.build({**Config.fromfile(LORA_CFG).model, 'lora': None})
    names = find_linear_names(base.llm)
    wrapped = get_peft_model(base, LoraConfig(r=4, target_modules=names))
    assert any('vision_tower' in n and 'lora_' in n for n, _ in wrapped.named_parameters())


def test_explicit_targets_stay_in_llm():
    model = build_lora(target_modules=['q_proj', 'v_proj'])
    lora_modules = {n.split('.lora_')[0] for n, _ in model.named_parameters() if 'lora_' in n}
    assert lora_modules and all(n.startswith('llm.') for n in lora_modules)
    assert {m.rsplit('.', 1)[-1] for m in lora_modules} == {'q_proj', 'v_proj'}


def test_merge_gives_same_logits_and_base_layout():
    model = build_lora().eval()
    randomize_adapters(model)
    ids = torch.randint(3, 1000, (2, 12))
    with torch.no_grad():
        before = model(dict(input_ids=ids), mode='tensor')
    merge_lora(model)
    with torch.no_grad():
        after = model(dict(input_ids=ids), mode='tensor')
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    base = MODELS.build({**Config.fromfile(LORA_CFG).model, 'lora': None})
    assert set(model.state_dict()) == set(base.state_dict())
