"""Peak memory of closed-set ranking (``Llava.score_answers``) at a benchmark shape.

The LLM of ``benchmark.py``'s size (``1b``: TinyLlama-1.1B's shape) ranks a label set's class
names after a clip prompt: ``--frames`` frames of 144 tokens (``avgpool2x2`` of a 24 x 24 CLIP
grid) plus the vicuna_v1 conversation with the closed question listing the classes, tokenized
by the shipped tiny tokenizer (1024 pieces: it gives more tokens per name than LLaMA's 32000,
so the counts here err on the long side). Only the token counts matter, so the prompt's ids
are text ids and no image is encoded.

One process per run: its peak RSS (``VmHWM``, reset just before ranking) minus the RSS before
ranking is what ranking costs (prompt forward, cache, candidate pass, logits).

Example (the numbers of ``docs/ranking.md``)::

    python tools/analysis_tools/ranking_memory.py --size 1b --classes ucf101 --out after.json
    # the same inputs, ranked by another checkout's score_answers (e.g. the one before):
    python tools/analysis_tools/ranking_memory.py --size 1b --inputs after.json --out before.json
"""
import json
import os
import os.path as osp
import re
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import SIZES, _reset_peak_rss, _rss_kib, build_mmllava  # noqa: E402

from mmllava.utils.cli import make_parser, run_cli  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOKENIZER = osp.join(ROOT, 'resources', 'tiny-tokenizer', 'tokenizer.model')
TOKENS_PER_FRAME = 144
# UCF101's classInd order (mmaction2's tools/data/ucf101/label_map.txt).
UCF101 = (
    'ApplyEyeMakeup ApplyLipstick Archery BabyCrawling BalanceBeam BandMarching BaseballPitch '
    'Basketball BasketballDunk BenchPress Biking Billiards BlowDryHair BlowingCandles '
    'BodyWeightSquats Bowling BoxingPunchingBag BoxingSpeedBag BreastStroke BrushingTeeth '
    'CleanAndJerk CliffDiving CricketBowling CricketShot CuttingInKitchen Diving Drumming '
    'Fencing FieldHockeyPenalty FloorGymnastics FrisbeeCatch FrontCrawl GolfSwing Haircut '
    'Hammering HammerThrow HandstandPushups HandstandWalking HeadMassage HighJump HorseRace '
    'HorseRiding HulaHoop IceDancing JavelinThrow JugglingBalls JumpingJack JumpRope Kayaking '
    'Knitting LongJump Lunges MilitaryParade Mixing MoppingFloor Nunchucks ParallelBars '
    'PizzaTossing PlayingCello PlayingDaf PlayingDhol PlayingFlute PlayingGuitar PlayingPiano '
    'PlayingSitar PlayingTabla PlayingViolin PoleVault PommelHorse PullUps Punch PushUps '
    'Rafting RockClimbingIndoor RopeClimbing Rowing SalsaSpin ShavingBeard Shotput '
    'SkateBoarding Skiing Skijet SkyDiving SoccerJuggling SoccerPenalty StillRings '
    'SumoWrestling Surfing Swing TableTennisShot TaiChi TennisSwing ThrowDiscus '
    'TrampolineJumping Typing UnevenBars VolleyballSpiking WalkingWithDog WallPushups '
    'WritingOnBoard YoYo').split()


def make_inputs(classes: str, frames: int) -> dict:
    """Prompt length and candidate ids of a clip prompt ranking a label set."""
    from mmllava.conversation import (
        SentencePieceTokenizer,
        answer_token_ids,
        tokenize_conversation,
    )
    from mmllava.datasets.action_lists import closed_set_question
    from mmllava.datasets.label_map import readable_class_name
    if classes != 'ucf101':
        raise ValueError(f'unknown label set {classes!r}')
    names = [readable_class_name(n) for n in UCF101]
    tok = SentencePieceTokenizer(TOKENIZER)
    prompt = tokenize_conversation(
        [dict(role='user', content='<video>\n' + closed_set_question(names))], tok,
        'vicuna_v1', num_visual_tokens=frames * TOKENS_PER_FRAME, add_generation_prompt=True)
    candidates = answer_token_ids(names, tok, 'vicuna_v1')
    return dict(classes=classes, frames=frames, prompt_tokens=len(prompt['input_ids']),
                candidates=candidates)


def measure(size: str, dtype: str, inputs: dict, batch: int, threads: int) -> dict:
    """Peak RSS over one ``score_answers`` call (in this process)."""
    import torch
    torch.set_num_threads(threads)
    model = build_mmllava(size, dtype)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.llm.parameters():  # built uninitialized: give it sane values
            p.normal_(0, 0.02)
    vocab = SIZES[size]['text']['vocab_size']
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (batch, inputs['prompt_tokens']), generator=g)
    rss = _rss_kib('VmRSS')
    _reset_peak_rss()
    t0 = time.perf_counter()
    with torch.no_grad():
        scores = model.score_answers(ids, None, None, inputs['candidates'])
    seconds = time.perf_counter() - t0
    peak = _rss_kib('VmHWM')
    text = model.llm.config
    head_dim = text.hidden_size // text.num_attention_heads
    kv_bytes = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * \
        torch.finfo(getattr(torch, dtype)).bits // 8
    return dict(size=size, dtype=dtype, batch=batch, threads=threads,
                prompt_tokens=inputs['prompt_tokens'], num_classes=len(inputs['candidates']),
                candidate_tokens=sum(len(c) for c in inputs['candidates']),
                kv_bytes_per_token=kv_bytes,
                prompt_cache_mib=kv_bytes * inputs['prompt_tokens'] * batch / 2**20,
                ranking_peak_mib=(peak - rss) / 1024, rss_before_mib=rss / 1024,
                seconds=seconds, finite=bool(torch.isfinite(scores).all()),
                top1=scores.argmax(-1).tolist())


def parse_args(argv=None):
    parser = make_parser(description='Peak memory of closed-set ranking')
    parser.add_argument('--size', default='1b', choices=list(SIZES))
    parser.add_argument('--dtype', default='float32', help='weights and cache dtype')
    parser.add_argument('--classes', default='ucf101', choices=['ucf101'])
    parser.add_argument('--frames', type=int, default=8)
    parser.add_argument('--batch', type=int, default=1, help='prompts ranked at once')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--inputs', help='rank the inputs of an earlier --out file instead '
                        '(e.g. with another checkout, which then needs no new helpers)')
    parser.add_argument('--out', help='write the result (and the inputs) to this JSON file')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.inputs:
        with open(args.inputs) as f:
            inputs = json.load(f)['inputs']
    else:
        inputs = make_inputs(args.classes, args.frames)
    result = measure(args.size, args.dtype, inputs, args.batch, args.threads)
    result['code'] = os.popen(f'git -C {re.escape(ROOT)} rev-parse --short HEAD').read().strip()
    print(json.dumps({k: v for k, v in result.items() if k != 'top1'}, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(result=result, inputs=inputs), f)
    return result


if __name__ == '__main__':
    run_cli(main)
