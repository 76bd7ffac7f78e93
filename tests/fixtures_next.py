"""Tiny random stand-ins of the LLaVA-NeXT family in transformers, saved as llava-hf folders.

``LlavaNextForConditionalGeneration`` (CLIP + LLaMA), ``LlavaNextVideoForConditionalGeneration``
(CLIP + LLaMA, clips pooled on the tower's features) and ``LlavaOnevisionForConditionalGeneration``
(SigLIP + Qwen2 with a byte-level BPE tokenizer), every weight perturbed so that a mapping that
mixes two same-shaped tensors cannot pass. Shared by the parity tests and the recipe tests.
"""
import json

import torch

CLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            image_size=32, patch_size=8, hidden_act='quick_gelu', projection_dim=16)
SIGLIP = dict(model_type='siglip_vision_model', hidden_size=32, intermediate_size=64,
              num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8,
              vision_use_head=False)
LLAMA = dict(model_type='llama', hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=1064,
             max_position_embeddings=1024, rms_norm_eps=1e-5, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, pad_token_id=1001)
NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]
OV_PINPOINTS = [[32 * r, 32 * c] for r in range(1, 4) for c in range(1, 4)]
SIZES = [(40, 150), (150, 40), (64, 64), (9, 12)]  # wide, tall, square, tiny
IMAGE_ID, PAD_ID, VIDEO_ID = 1000, 1001, 1002


def _perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def _llama_tokenizer(tmp):
    from fixtures_llava import train_tokenizer

    from mmllava.convert import hf_tokenizer_from_sentencepiece
    sp = train_tokenizer(str(tmp))
    tok = hf_tokenizer_from_sentencepiece(sp)
    tok.add_tokens(['<image>'], special_tokens=True)
    tok.add_special_tokens({'pad_token': '<pad>'})
    tok.add_tokens(['<video>'], special_tokens=True)
    assert tok.convert_tokens_to_ids(['<image>', '<pad>', '<video>']) == [IMAGE_ID, PAD_ID,
                                                                          VIDEO_ID]
    return tok


def _qwen_tokenizer():
    from fixtures_llava import _corpus
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<image>', '<video>']
    trainer = trainers.BpeTrainer(vocab_size=600, show_progress=False, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus() + ['You are a helpful assistant. user assistant system'],
                            trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|im_end|>',
                                   pad_token='<|endoftext|>')


def build_next_family(family, tmp, vision=None, text=None, convert=True, **overrides):
    """A tiny ``family`` ('next', 'video' or 'onevision') saved as a llava-hf folder under
    ``tmp`` and, with ``convert``, converted by our tool: ``(hf_model, tokenizer, folder)``.

    ``vision`` and ``text`` update the tower's and the LLM's configs, ``overrides`` the top
    config (``image_grid_pinpoints``, ``vision_aspect_ratio``).
    """
    import transformers as tf
    torch.manual_seed({'next': 0, 'video': 1, 'onevision': 2}[family])
    if family == 'onevision':
        tok = _qwen_tokenizer()
        ids = tok.convert_tokens_to_ids(['<image>', '<video>', '<|endoftext|>', '<|im_end|>'])
        text = dict(LLAMA, model_type='qwen2', vocab_size=640, bos_token_id=None,
                    eos_token_id=ids[3], pad_token_id=ids[2], **(text or {}))
        top = dict(image_token_index=ids[0], video_token_index=ids[1],
                   image_grid_pinpoints=OV_PINPOINTS, vision_aspect_ratio='anyres_max_2',
                   vision_feature_layer=-1, vision_feature_select_strategy='full')
        cfg = tf.LlavaOnevisionConfig(vision_config=dict(SIGLIP, **(vision or {})),
                                      text_config=text, **dict(top, **overrides))
        model = tf.LlavaOnevisionForConditionalGeneration(cfg)
        proc_cfg = dict(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    else:
        tok = _llama_tokenizer(tmp)
        vision = dict(CLIP, model_type='clip_vision_model', **(vision or {}))
        common = dict(vision_config=vision, text_config=dict(LLAMA, **(text or {})),
                      image_token_index=IMAGE_ID,
                      image_grid_pinpoints=NEXT_PINPOINTS, vision_feature_layer=-2,
                      vision_feature_select_strategy='default')
        common.update(overrides)
        if family == 'next':
            model = tf.LlavaNextForConditionalGeneration(tf.LlavaNextConfig(**common))
        else:
            model = tf.LlavaNextVideoForConditionalGeneration(tf.LlavaNextVideoConfig(
                video_token_index=VIDEO_ID, spatial_pool_mode='average', spatial_pool_stride=2,
                **common))
        proc_cfg = dict(image_mean=list(tf.utils.constants.OPENAI_CLIP_MEAN),
                        image_std=list(tf.utils.constants.OPENAI_CLIP_STD))
    _perturb(model)
    src = tmp / f'{family}-hf'
    model.save_pretrained(str(src))
    tok.save_pretrained(str(src))
    with open(src / 'preprocessor_config.json', 'w') as f:
        json.dump(proc_cfg, f)
    if not convert:
        return model, tok, src
    from mmllava.convert import convert_to_mmllava
    out = tmp / f'{family}-mmllava'
    convert_to_mmllava(str(src), str(out), verbose=False)
    return model, tok, out


