"""LLaVA's own behaviour: scatter order, loss masking, padding, errors."""
import pytest
import torch
from fixtures_llava import VISION

from mmllava.models import IMAGE_TOKEN_INDEX
from mmllava.registry import MODELS

LLM = dict(model_type='llama', hidden_size=64, intermediate_size=128, num_hidden_layers=2,
           num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
           max_position_embeddings=128, tie_word_embeddings=False)
N_TOK = 25  # (30 / 6)^2 patches, CLS dropped


def build(**kwargs):
    torch.manual_seed(0)
    cfg = dict(type='Llava', vision_encoder=dict(type='HFCLIPVisionEncoder', config=VISION),
               projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
               llm=dict(type='HFCausalLM', config=LLM))
    cfg.update(kwargs)
    return MODELS.build(cfg).eval()


@pytest.fixture(scope='module')
def model():
    return build()


def ids_with_images(*parts):
    out = []
    for p in parts:
        out += [IMAGE_TOKEN_INDEX] * N_TOK if p == 'img' else list(p)
    return torch.tensor([out])


def test_num_image_tokens_and_projector_keys(model):
    assert model.num_image_tokens == N_TOK
    keys = set(model.state_dict())
    assert {'projector.0.weight', 'projector.2.weight'} <= keys
    assert 'vision_tower.vision_model.encoder.layers.2.mlp.fc1.weight' in keys
    assert 'llm.model.embed_tokens.weight' in keys and 'llm.lm_head.weight' in keys


def test_vision_tower_selects_second_last_layer_without_cls(model):
    px = torch.randn(2, 3, 30, 30)
    ref = model.vision_tower.vision_model(px, output_hidden_states=True).hidden_states[-2][:, 1:]
    torch.testing.assert_close(model.vision_tower(px), ref, rtol=0, atol=0)


def test_images_scatter_in_order(model):
    ids = ids_with_images([1, 5], 'img', [7], 'img', [9])
    px = torch.randn(2, 3, 30, 30)
    embeds = model.embed_inputs(ids, px)
    feats = model.encode_images(px)
    torch.testing.assert_close(embeds[0, 2:2 + N_TOK], feats[0])
    torch.testing.assert_close(embeds[0, 3 + N_TOK:3 + 2 * N_TOK], feats[1])
    text = model.llm.get_input_embeddings()(torch.tensor([1, 5, 7, 9]))
    torch.testing.assert_close(embeds[0, [0, 1, 2 + N_TOK, 3 + 2 * N_TOK]], text)
    # Swapping the images swaps the features: order is respected, not averaged away.
    swapped = model.embed_inputs(ids, px.flip(0))
    assert not torch.allclose(swapped, embeds)


def test_placeholder_count_mismatch_raises(model):
    ids = ids_with_images([1], 'img', [5])
    with pytest.raises(ValueError, match='placeholders'):
        model.embed_inputs(ids, torch.randn(2, 3, 30, 30))
    with pytest.raises(ValueError, match='no images'):
        model.embed_inputs(ids, None)


def test_prompt_longer_than_context_raises(model):
    ids = torch.ones(1, LLM['max_position_embeddings'] + 1, dtype=torch.long)
    with pytest.raises(ValueError, match='longer than the model context'):
        model(dict(input_ids=ids), mode='tensor')
    with pytest.raises(ValueError, match='longer than the model context'):
        model.generate(ids, max_new_tokens=2)


def test_loss_uses_only_unmasked_labels(model):
    ids = ids_with_images([1, 5], 'img', [7, 8, 9, 10])
    labels = torch.full_like(ids, -100)
    labels[0, -3:] = ids[0, -3:]
    px = torch.randn(1, 3, 30, 30)
    loss = model(dict(input_ids=ids, labels=labels, pixel_values=px), mode='loss')['loss']
    logits = model(dict(input_ids=ids, pixel_values=px), mode='tensor')
    # Next-token CE over the 3 unmasked targets, by hand.
    targets = ids[0, -3:]
    logp = torch.log_softmax(logits[0, -4:-1], -1)
    expected = -logp[torch.arange(3), targets].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='Every label'):
        model(dict(input_ids=ids, labels=torch.full_like(ids, -100), pixel_values=px),
              mode='loss')


def _padded_batch():
    """Three right-padded rows: two answers, one answer, a text-only row."""
    rows = [ids_with_images([1, 5], 'img', [7, 8, 9, 10, 11, 12])[0],
            ids_with_images([1], 'img', [4, 6, 3])[0], torch.tensor([1, 20, 21, 22, 23])]
    spans = [[(-6, -4), (-2, None)], [(-1, None)], [(2, None)]]
    width = max(len(r) for r in rows)
    ids = torch.zeros(3, width, dtype=torch.long)
    labels = torch.full((3, width), -100)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, (row, row_spans) in enumerate(zip(rows, spans)):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
        for a, b in row_spans:
            labels[i, :len(row)][a:b] = row[a:b]
    return ids, mask, labels, torch.randn(2, 3, 30, 30)


def test_loss_projects_only_positions_with_a_target():
    m = build()
    m.train()
    ids, mask, labels, px = _padded_batch()
    heads = []
    handle = m.llm.lm_head.register_forward_hook(lambda mod, args, out: heads.append(args[0]))
    loss = m(dict(input_ids=ids, attention_mask=mask, labels=labels, pixel_values=px),
             mode='loss')['loss']
    handle.remove()
    # Positions t with labels[t + 1] in some row: the image and prompt positions are skipped.
    needed = int((labels[:, 1:] != -100).any(0).sum())
    assert heads[0].shape[:2] == (3, needed) and needed < ids.shape[1] - N_TOK
    loss.backward()
    ours = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    # transformers' own causal-LM loss over full logits is the reference.
    ref = m._forward_llm(ids, mask, px, labels=labels).loss
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    assert ours.keys() == {n for n, p in m.named_parameters() if p.grad is not None}
    for name, grad in ours.items():
        torch.testing.assert_close(grad, dict(m.named_parameters())[name].grad, rtol=1e-5,
                                   atol=1e-6, msg=name)


def test_loss_through_lora_equals_full_logits_loss():
    m = build(lora=dict(r=4, alpha=8, dropout=0.0))
    ids, mask, labels, px = _padded_batch()
    with torch.no_grad():
        for name, p in m.llm.named_parameters():
            if 'lora_B' in name:
                p.normal_(0, 0.1)  # adapters at zero would hide a path that skips them
        loss = m(dict(input_ids=ids, attention_mask=mask, labels=labels, pixel_values=px),
                 mode='loss')['loss']
        ref = m._forward_llm(ids, mask, px, labels=labels).loss
        m.llm.disable_adapter_layers()
        plain = m(dict(input_ids=ids, attention_mask=mask, labels=labels, pixel_values=px),
                  mode='loss')['loss']
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    assert abs(float(loss - plain)) > 1e-4


def test_loss_backward_reaches_projector_not_frozen_vision(model):
    m = build()
    m.train()
    ids = ids_with_images([1], 'img', [7, 8])
    labels = ids.masked_fill(ids < 0, -100)
    out = m(dict(input_ids=ids, labels=labels, pixel_values=torch.randn(1, 3, 30, 30)),
            mode='loss')
    out['loss'].backward()
    assert m.projector[0].weight.grad is not None
    assert all(p.grad is None for p in m.vision_tower.parameters())


def test_left_padded_batch_generation_equals_single(model):
    prompts = [ids_with_images([1, 5], 'img', [7, 8, 9]), ids_with_images([1], 'img', [4]),
               ids_with_images([1, 2, 3, 4, 5, 6], 'img', [10])]
    px = torch.randn(3, 3, 30, 30)
    singles = [model.generate(p, pixel_values=px[i:i + 1], max_new_tokens=6)[0].tolist()
               for i, p in enumerate(prompts)]
    pre = MODELS.build(dict(type='LlavaDataPreprocessor'))
    batch = pre(dict(inputs=[dict(input_ids=p[0], images=torch.zeros(1, 3, 30, 30,
                                                                     dtype=torch.uint8))
                             for p in prompts]), training=False)['inputs']
    assert (batch['attention_mask'][:, -1] == 1).all()  # left padded
    batched = model.generate(batch['input_ids'], batch['attention_mask'], px,
                             max_new_tokens=6)
    assert batched.tolist() == singles


def test_right_padded_generation_is_refused(model):
    ids = torch.tensor([[1, 2, 3], [1, 2, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match='left padding'):
        model.generate(ids, mask, max_new_tokens=2)


def test_data_preprocessor_normalizes_and_pads_right_for_training():
    pre = MODELS.build(dict(type='LlavaDataPreprocessor', pad_token_id=7))
    img = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = pre(dict(inputs=[dict(input_ids=[1, 2, 3], labels=[-100, 2, 3], images=img),
                           dict(input_ids=[1, 4], labels=[-100, 4])]), training=True)['inputs']
    assert out['input_ids'].tolist() == [[1, 2, 3], [1, 4, 7]]
    assert out['labels'].tolist() == [[-100, 2, 3], [-100, 4, -100]]
    assert out['attention_mask'].tolist() == [[1, 1, 1], [1, 1, 0]]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    torch.testing.assert_close(out['pixel_values'][0, :, 0, 0], (1 - mean) / std)


@pytest.mark.parametrize('ptype,keys', [('linear', {'weight', 'bias'}),
                                        ('mlp3x_gelu', {'0.weight', '2.weight', '4.weight'}),
                                        ('identity', set())])
def test_projector_types(ptype, keys):
    from mmllava.models import LlavaProjector
    proj = LlavaProjector(ptype, 8, 8)
    assert keys <= set(proj.state_dict()) and len(proj.state_dict()) >= len(keys)
    assert proj(torch.randn(2, 8)).shape == (2, 8)
    with pytest.raises(ValueError, match='Unknown projector_type'):
        LlavaProjector('mlp_relu', 8, 8)


def test_cls_patch_strategy_and_bad_layer():
    m = build(vision_encoder=dict(type='HFCLIPVisionEncoder', config=VISION,
                                  select_feature='cls_patch', select_layer=-1))
    assert m.num_image_tokens == N_TOK + 1
    px = torch.randn(1, 3, 30, 30)
    ref = m.vision_tower.vision_model(px).last_hidden_state
    torch.testing.assert_close(m.vision_tower(px), ref)
    with pytest.raises(ValueError, match='out of range'):
        MODELS.build(dict(type='HFCLIPVisionEncoder', config=VISION, select_layer=-9))


def test_open_clip_encoder_feeds_llava():
    m = build(vision_encoder=dict(type='OpenCLIPVisionEncoder', model_name='ViT-B-16',
                                  model_cfg=dict(layers=2, width=64, head_width=32,
                                                 image_size=32, patch_size=16)))
    assert m.num_image_tokens == 4
    ids = torch.tensor([[1] + [IMAGE_TOKEN_INDEX] * 4 + [5]])
    logits = m(dict(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32)), mode='tensor')
    assert logits.shape == (1, 6, LLM['vocab_size'])
