"""LLaVA: vision encoder -> projector -> LLM, with placeholder scatter."""
import inspect
import os
import warnings
from typing import List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel
from torch import nn

from mmllava.registry import MODELS, TOKENIZERS
from mmllava.structures import IGNORE_INDEX, IMAGE_TOKEN_INDEX

from .ranking import RANKINGS, score_candidates
from .video import build_frame_pooling
from .visual_features import LlavaVisualsMixin, check_anyres

_TASK_FIELDS = {'caption': 'pred_caption'}


def _select_rows(inputs: dict, rows: List[int]) -> dict:
    """The batch restricted to ``rows``; the other rows hold no visuals (invalid samples).

    Columns left all padding (the batch is left padded) are dropped with them.
    """
    if len(rows) == len(inputs['input_ids']):
        return inputs
    out = dict(inputs)
    out['input_ids'] = inputs['input_ids'][rows]
    mask = inputs.get('attention_mask')
    if mask is not None:
        mask = mask[rows]
        first = int((mask.sum(0) > 0).nonzero()[0])
        out['input_ids'], out['attention_mask'] = out['input_ids'][:, first:], mask[:, first:]
    return out


@MODELS.register_module()
class Llava(LlavaVisualsMixin, BaseModel):
    """LLaVA (Large Language and Vision Assistant).

    Token ids arrive with every ``<image>`` already expanded to ``num_image_tokens`` copies of
    ``image_token_index`` (an id outside the vocabulary); the model embeds the text and scatters
    the projected image features into those positions, in order. Several images per sample
    and per batch need nothing special.

    Args:
        vision_encoder (dict): A vision encoder config (e.g. ``HFCLIPVisionEncoder``).
        projector (dict): A projector config (``LlavaProjector``); ``in_channels`` and
            ``out_channels`` default to the encoder's and LLM's widths.
        llm (dict): An LLM config (``HFCausalLM``).
        tokenizer (dict | str, optional): Used only to decode generated ids to text.
        data_preprocessor (dict, optional): Defaults to ``LlavaDataPreprocessor``.
        task (str): ``'vqa'`` (results in ``pred_answer``) or ``'caption'``
            (``pred_caption``); chat and action models answer like ``'vqa'``.
        default_question (str, optional): The question asked when a user gives none.
        generation_cfg (dict): Default keyword arguments of transformers' ``generate``.
        image_token_index (int): The placeholder id. Defaults to -200, as the original.
        freeze_vision_encoder (bool): Freeze the vision encoder. Defaults to True.
        freeze_projector (bool): Freeze the projector.
        freeze_llm (bool): Freeze the LLM.
        lora (dict, optional): LoRA on the LLM's linear layers (never the vision tower or the
            projector): ``r``, ``alpha``, ``dropout``, ``target_modules`` (names inside the
            LLM) of :func:`mmllava.models.peft.apply_lora`. The LLM's base weights are then
            frozen and its adapters train.
        video_pooling (str | dict, optional): How the frames of a clip become its tokens:
            ``'none'`` (default), ``'avgpool2x2'``, ``'maxpool2x2'``, ``'bilinear'`` or
            ``'spatial_temporal'``, or a config (see :mod:`mmllava.models.video`); a pooling of
            ``stage='vision'`` pools the tower's features before the projector. Visuals of
            one frame (images) are never pooled.
        frame_position_scale (float): Scale of the fixed sinusoidal frame-index embedding added
            to each frame's projected tokens (before pooling) of multi-frame visuals. Defaults
            to 0 (off): pretrained LLaVA weights never saw such a signal, and frame order is
            already told by token order (RoPE) for ``'none'``/``'avgpool2x2'`` and by the
            per-frame tokens of ``'spatial_temporal'``. Set it (e.g. 0.02, near the LLM's
            embedding scale) when finetuning on clips to tag each frame's tokens with its
            index. The temporal means of ``'spatial_temporal'`` stay order-blind either way
            (the mean of added positions is a constant).
        ranking (str): How :meth:`score_answers` scores a class: ``'sum'`` (its answer's
            summed log-probability, the default; on MoCap-Actions the same top-1 as
            ``'mean'`` and a better top-5, ``docs/ranking.md``) or ``'mean'`` (per token,
            which does not favour short names).
        class_chunk_size (int): Classes scored per pass over the prompt's cache (their tokens
            are what a pass adds to the cache). Defaults to 256.
        anyres (dict, optional): LLaVA-NeXT / OneVision images (base view + tiles merged by
            :func:`~mmllava.models.anyres.pack_anyres_features`, with a learned
            ``image_newline``): ``image_grid_pinpoints`` and ``tile_size`` (required),
            ``patches_per_side``, ``base_tokens``, ``max_num_tiles`` (OneVision's
            ``anyres_max_N``), the same dict the pipeline's ``AnyresTiles`` takes.
        init_cfg (dict, optional): mmengine initialization config.
    """

    def __init__(self,
                 vision_encoder: dict,
                 projector: dict,
                 llm: dict,
                 tokenizer: Optional[Union[dict, str]] = None,
                 data_preprocessor: Optional[dict] = None,
                 task: str = 'vqa',
                 default_question: Optional[str] = None,
                 generation_cfg: Optional[dict] = None,
                 image_token_index: int = IMAGE_TOKEN_INDEX,
                 freeze_vision_encoder: bool = True,
                 freeze_projector: bool = False,
                 freeze_llm: bool = False,
                 lora: Optional[dict] = None,
                 video_pooling: Optional[Union[str, dict]] = None,
                 frame_position_scale: float = 0.0,
                 ranking: str = 'sum',
                 class_chunk_size: int = 256,
                 anyres: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='LlavaDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.vision_tower = MODELS.build(vision_encoder)
        self.llm = MODELS.build(llm)
        projector = dict(projector)
        projector.setdefault('in_channels', self.vision_tower.hidden_size)
        projector.setdefault('out_channels', self.llm.config.hidden_size)
        self.projector = MODELS.build(projector)
        self.tokenizer = self._build_tokenizer(tokenizer)
        self.task = task
        self.default_question = default_question
        self.generation_cfg = dict(max_new_tokens=64, num_beams=1, do_sample=False)
        self.generation_cfg.update(generation_cfg or {})
        self.image_token_index = image_token_index
        self.video_pooling = build_frame_pooling(video_pooling)
        if frame_position_scale and getattr(self.video_pooling, 'stage', None) == 'vision':
            raise ValueError('frame_position_scale tags projected frames: it cannot be used '
                             "with a pooling of stage 'vision'")
        self.frame_position_scale = frame_position_scale
        self.anyres = check_anyres(anyres)
        self._build_image_newline(self.llm.config.hidden_size)
        if ranking not in RANKINGS:
            raise ValueError(f'ranking must be one of {RANKINGS}, got {ranking!r}')
        self.ranking = ranking
        self.class_chunk_size = class_chunk_size
        self._freeze(self.vision_tower, freeze_vision_encoder)
        self._freeze(self.projector, freeze_projector)
        if self.image_newline is not None and freeze_projector:
            self.image_newline.requires_grad_(False)  # trained with the projector (LLaVA-NeXT)
        self._freeze(self.llm, freeze_llm)
        if lora is not None:
            # After freezing: peft freezes the base LLM itself and leaves the adapters trainable.
            from .peft import apply_lora
            self.llm = apply_lora(self.llm, **lora)

    @staticmethod
    def _build_tokenizer(cfg):
        """A tokenizer from a config dict, a path (a ``tokenizer.model``/``tokenizer.json``
        or a folder holding one) or a built tokenizer, through the ``TOKENIZERS`` registry."""
        if isinstance(cfg, dict):
            return TOKENIZERS.build(cfg)
        if isinstance(cfg, (str, os.PathLike)):
            return TOKENIZERS.build(dict(type='tokenizer_from_path', path=os.fspath(cfg)))
        return cfg

    @staticmethod
    def _freeze(module: nn.Module, frozen: bool) -> None:
        if frozen:
            module.requires_grad_(False)

    @property
    def num_image_tokens(self) -> int:
        """Placeholder tokens per image."""
        return self.vision_tower.num_image_tokens

    @property
    def max_length(self) -> int:
        """The LLM's context length (stretched by a linear RoPE scaling: NeXT-Video-7B's x2)."""
        config = self.llm.config
        rope = getattr(config, 'rope_parameters', None) or {}
        factor = rope.get('factor', 1.0) if rope.get('rope_type') == 'linear' else 1.0
        return int(config.max_position_embeddings * factor)

    @staticmethod
    def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
        # Positions count real tokens only, so left padding changes nothing.
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    def _check_length(self, length: int) -> None:
        if length > self.max_length:
            raise ValueError(f'The prompt is {length} tokens long (image tokens included), '
                             f'longer than the model context of {self.max_length} tokens')

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: dict, data_samples: Optional[list] = None, mode: str = 'tensor'):
        """mmengine's entry point.

        Args:
            inputs (dict): From the data preprocessor: ``input_ids``, ``attention_mask``,
                ``pixel_values`` and (for ``'loss'``) ``labels``.
            data_samples (list, optional): mmpretrain ``DataSample`` per sample.
            mode (str): ``'loss'`` -> dict of losses; ``'predict'`` -> data samples with
                ``pred_answer`` / ``pred_caption``; ``'tensor'`` -> logits (B, L, vocab).
        """
        if mode == 'loss':
            return self.loss(**inputs)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward_llm(inputs['input_ids'], inputs.get('attention_mask'),
                                     inputs.get('pixel_values'),
                                     visual_frames=inputs.get('visual_frames'),
                                     image_sizes=inputs.get('image_sizes')).logits
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def _forward_llm(self, input_ids, attention_mask=None, pixel_values=None, labels=None,
                     visual_frames=None, image_sizes=None, **llm_kwargs):
        self._check_length(input_ids.shape[1])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.embed_inputs(input_ids, pixel_values, visual_frames, image_sizes)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask,
                        position_ids=self._position_ids(attention_mask), labels=labels,
                        use_cache=False, **llm_kwargs)

    def loss(self, input_ids: torch.Tensor, labels: torch.Tensor,
             attention_mask: Optional[torch.Tensor] = None,
             pixel_values: Optional[torch.Tensor] = None,
             visual_frames: Optional[Sequence[int]] = None,
             image_sizes: Optional[torch.Tensor] = None) -> dict:
        """Next-token cross entropy over the unmasked labels.

        The mean over every position whose next label is not ``IGNORE_INDEX``, as transformers'
        causal-LM loss. Only the positions some row of the batch has a target at go through
        the LM head (``logits_to_keep``): image tokens and prompts carry no loss, and skipping
        them saves most of the head's time and its (B, L, vocab) logits.
        """
        if not (labels != IGNORE_INDEX).any():
            raise ValueError('Every label in the batch is masked: nothing to learn from. Check the '
                             'conversation template against the data.')
        if not self._llm_keeps_logits():
            out = self._forward_llm(input_ids, attention_mask, pixel_values, labels=labels,
                                    visual_frames=visual_frames, image_sizes=image_sizes)
            return dict(loss=out.loss)
        # Position t predicts labels[t + 1]; the last position predicts nothing.
        targets = nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        keep = (targets != IGNORE_INDEX).any(0).nonzero().squeeze(1)
        logits = self._forward_llm(input_ids, attention_mask, pixel_values,
                                   visual_frames=visual_frames, image_sizes=image_sizes,
                                   logits_to_keep=keep).logits
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1),
                                           targets[:, keep].flatten().to(logits.device),
                                           ignore_index=IGNORE_INDEX)
        return dict(loss=loss)

    def _llm_keeps_logits(self) -> bool:
        """Whether the LLM's forward takes ``logits_to_keep`` (transformers' causal LMs do)."""
        # Not cached: the LLM may be swapped after building (LoRA applied, adapters merged).
        base = self.llm.get_base_model() if hasattr(self.llm, 'get_base_model') else self.llm
        return 'logits_to_keep' in inspect.signature(base.forward).parameters

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                 pixel_values: Optional[torch.Tensor] = None,
                 visual_frames: Optional[Sequence[int]] = None,
                 image_sizes: Optional[torch.Tensor] = None,
                 decoder: Optional[str] = None,
                 **generate_kwargs) -> torch.Tensor:
        """KV-cached generation: mmllava's decode loop, or transformers' ``generate``.

        Batches must be left padded. Keywords are transformers' (``max_new_tokens``,
        ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``,
        ``min_new_tokens``, ``streamer``, ``stopping_criteria``, ``stop_strings`` ...), over
        ``generation_cfg``, with transformers' meanings.

        Args:
            decoder (str, optional): ``'mmllava'`` (default; also ``generation_cfg['decoder']``):
                :mod:`mmllava.models.decoding`, a static KV cache and one lean step per token,
                greedy ids identical to transformers'. ``'transformers'``: its ``generate``.
                Beam search, keywords the loop does not implement and LLMs it does not run
                (unmerged LoRA, int8 / 4-bit layers) go to transformers' ``generate``.
            decode_dtype (via keywords or ``generation_cfg``): ``'bfloat16'``: our loop's
                single-token steps use bf16 copies of the LLM's matrices (prefill and vision
                stay in the model's dtype); faster decode on CPUs, the copies cost half the
                fp32 LLM's memory more.

        Returns:
            Tensor: (B, T) the generated ids only (prompt excluded).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if (attention_mask[:, -1] == 0).any():
            raise ValueError('Batched generation needs left padding (the last position of a '
                             'row is padding)')
        self._check_length(input_ids.shape[1])
        decoder = decoder or {**self.generation_cfg, **generate_kwargs}.get('decoder') \
            or 'mmllava'
        if decoder not in ('mmllava', 'transformers'):
            raise ValueError(f"decoder must be 'mmllava' or 'transformers', not {decoder!r}")
        cfg = self.generation_options(input_ids, generate_kwargs, llm_defaults=False)
        decode_dtype = cfg.pop('decode_dtype', None)
        embeds = self.embed_inputs(input_ids, pixel_values, visual_frames, image_sizes)
        if decoder == 'mmllava' and self.decode_fallback_reason(cfg) is None:
            from .decoding import decode, fast_lm
            cfg = self._llm_defaults(cfg)
            return decode(fast_lm(self.llm), embeds, attention_mask,
                          decode_dtype=decode_dtype, **cfg)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, **cfg)

    def generation_options(self, input_ids: torch.Tensor, generate_kwargs: dict,
                           llm_defaults: bool = True) -> dict:
        """``generate``'s keywords for a prompt: ``generation_cfg`` under ``generate_kwargs``,
        ``max_new_tokens`` cut to the context left (with a warning), the tokenizer's stop and
        pad ids by default; with ``llm_defaults``, the sampling values the LLM's own
        generation config sets where none is given (as transformers' ``generate`` takes
        them). ``decoder`` is removed."""
        cfg = {**self.generation_cfg, **generate_kwargs}
        cfg.pop('decoder', None)
        room = self.max_length - input_ids.shape[1]
        if cfg.get('max_new_tokens', 0) > room:
            warnings.warn(f"max_new_tokens={cfg['max_new_tokens']} exceeds the context left "
                          f'({room} tokens); generating at most {room}')
            cfg['max_new_tokens'] = room
        if self.tokenizer is not None:
            cfg.setdefault('eos_token_id', self.tokenizer.eos_token_id)
            cfg.setdefault('pad_token_id', self.tokenizer.pad_token_id)
        return self._llm_defaults(cfg) if llm_defaults else cfg

    def _llm_defaults(self, cfg: dict) -> dict:
        own = getattr(self.llm, 'generation_config', None)
        for key in ('temperature', 'top_k', 'top_p', 'repetition_penalty'):
            if cfg.get(key) is None:
                cfg[key] = getattr(own, key, None)
        cfg.setdefault('max_new_tokens', 20)
        return cfg

    def decode_fallback_reason(self, generate_kwargs: Optional[dict] = None) -> Optional[str]:
        """Why these keywords / this LLM go to transformers' ``generate``, or None."""
        from .decoding import unsupported_kwargs, unsupported_reason
        names = unsupported_kwargs(generate_kwargs or {})
        if names:
            return f'keywords {", ".join(sorted(set(names)))}'
        return unsupported_reason(self.llm)

    # ------------------------------------------------------------------ closed-set ranking
    @torch.no_grad()
    def score_answers(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                      pixel_values: Optional[torch.Tensor], candidates: Sequence[Sequence[int]],
                      visual_frames: Optional[Sequence[int]] = None,
                      ranking: Optional[str] = None,
                      image_sizes: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Log-likelihood of each candidate answer after each prompt, prompt computed once.

        The (left padded) prompts run once with their KV cache kept; then all candidates go
        through the LLM as one sequence per prompt that reads that cache without copying it,
        a block mask keeping them apart (:func:`mmllava.models.ranking.score_candidates`).
        Each candidate's score equals that of a full forward of the prompt and it alone.

        Args:
            input_ids (Tensor): (B, L) prompts ending with the generation prompt.
            attention_mask (Tensor, optional): (B, L), left padding.
            pixel_values (Tensor, optional): The prompts' visuals, as in :meth:`generate`.
            candidates: C id sequences (each ends with its stop token).
            visual_frames: Frames per visual, as in :meth:`embed_inputs`.
            image_sizes: Anyres image sizes per visual, as in :meth:`embed_inputs`.
            ranking (str, optional): ``'sum'`` or ``'mean'`` log-probability per candidate;
                the model's :attr:`ranking` when not given.

        Returns:
            Tensor: (B, C) float32 scores.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if not candidates or any(len(c) == 0 for c in candidates):
            raise ValueError('Every candidate answer needs at least one token')
        # Positions restart after the prompt for each candidate: the longest one counts.
        self._check_length(input_ids.shape[1] + max(len(c) for c in candidates))
        embeds = self.embed_inputs(input_ids, pixel_values, visual_frames, image_sizes)
        return score_candidates(self.llm, embeds, attention_mask, candidates,
                                ranking or self.ranking, self.class_chunk_size)

    def predict(self, inputs: dict, data_samples: Optional[list] = None,
                **generate_kwargs) -> list:
        """Generate and decode; results go to ``pred_answer`` or ``pred_caption``.

        Samples whose metainfo holds ``candidate_ids`` (a closed set of answers as ids: an
        action dataset's classes, made by ``TokenizeConversation`` from ``answer_candidates``)
        also have them ranked by likelihood (:meth:`score_answers`): ``pred_scores`` (a
        softmax over the candidates, in their order) and ``pred_label``.
        """
        if self.tokenizer is None:
            raise RuntimeError('predict needs a tokenizer to decode; set model.tokenizer')
        if data_samples is None:
            from mmpretrain.structures import DataSample
            data_samples = [DataSample() for _ in range(len(inputs['input_ids']))]
        # Samples whose visual could not be read (test mode) carry the reason and no visual:
        # they are not run, and answer nothing (every metric counts them as misses).
        valid = [i for i, s in enumerate(data_samples) if not s.metainfo.get('invalid_sample')]
        field = _TASK_FIELDS.get(self.task, 'pred_answer')
        for i in sorted(set(range(len(data_samples))) - set(valid)):
            data_samples[i].set_field('', field)
            data_samples[i].set_field([], 'pred_token_ids')
        if not valid:
            return data_samples
        inputs = _select_rows(inputs, valid)
        ids = self.generate(inputs['input_ids'], inputs.get('attention_mask'),
                            inputs.get('pixel_values'), inputs.get('visual_frames'),
                            image_sizes=inputs.get('image_sizes'), **generate_kwargs)
        texts = self.decode(ids)
        probs = self._rank_candidates(inputs, [data_samples[i] for i in valid])
        for i, text, row in zip(range(len(valid)), texts, ids):
            sample = data_samples[valid[i]]
            sample.set_field(text, field)
            sample.set_field(row.tolist(), 'pred_token_ids')
            if probs is not None:
                sample.set_field(probs[i], 'pred_scores')
                sample.set_field(int(probs[i].argmax()), 'pred_label')
        return data_samples

    def _rank_candidates(self, inputs: dict, samples: list) -> Optional[List[torch.Tensor]]:
        """Per sample the softmax over its ``candidate_ids`` (None when no sample has any).

        One :meth:`score_answers` pass scores the union of the samples' candidate sets (a
        candidate's score does not depend on the others), and each sample keeps its own.
        """
        rows = [s.metainfo.get('candidate_ids') for s in samples]
        if all(r is None for r in rows):
            return None
        if any(r is None for r in rows):
            raise ValueError('A batch mixes samples with and without candidate_ids; rank all '
                             'or none (one dataset per batch)')
        union, column = [], {}
        for candidates in rows:
            for ids in candidates:
                key = tuple(int(t) for t in ids)
                if key not in column:
                    column[key] = len(union)
                    union.append(list(key))
        loglik = self.score_answers(inputs['input_ids'], inputs.get('attention_mask'),
                                    inputs.get('pixel_values'), union,
                                    inputs.get('visual_frames'),
                                    image_sizes=inputs.get('image_sizes')).cpu()
        return [loglik[i, [column[tuple(int(t) for t in ids)] for ids in candidates]].softmax(-1)
                for i, candidates in enumerate(rows)]

    def decode(self, ids: torch.Tensor) -> List[str]:
        """Decode generated ids, stopping at the first EOS."""
        eos = self.tokenizer.eos_token_id
        texts = []
        for row in ids.tolist():
            if eos in row:
                row = row[:row.index(eos)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts
