"""Ask a LLaVA what the person in a clip is doing, and save a picture of the frames it saw.

Example:
    python demo/video_demo.py data/mocap_actions/videos/test_walking_0000.mp4 \
        llava-tiny_mocap-actions --out work_dirs/video_demo.png

CLIP is a video file (anything PyAV decodes), an mmaction2 rawframe folder
(``img_00001.jpg`` ...) or a ``.npy`` array of shape (T, H, W, 3), uint8.
"""
import os.path as osp
import time


def parse_args(argv=None):
    from mmllava.utils.cli import add_model_arguments, make_parser

    parser = make_parser(description=__doc__.splitlines()[0])
    parser.add_argument('clip', help='video file, rawframe folder or .npy (T, H, W, 3) array')
    add_model_arguments(parser)
    parser.add_argument('--question', default=None,
                        help="the question (default: the model's default question)")
    parser.add_argument('--out', default=None,
                        help='save the sampled frames with the answer to this PNG')
    parser.add_argument('--show-prompt', action='store_true',
                        help='also print the exact prompt given to the LLM')
    return parser.parse_args(argv)


def load_clip(path: str):
    """A clip source for the inferencer, read by the API's rule (``.npy`` files are loaded)."""
    if not osp.exists(path):
        raise FileNotFoundError(2, 'no such video file or rawframe folder', path)
    from mmllava.apis.inference import load_input
    return load_input(path, 'clip')


def save_frames_picture(frames, answer: str, path: str, title: str = '') -> str:
    """The sampled frames in a row with the answer written below them, as a PNG."""
    import os

    import numpy as np
    from PIL import Image, ImageDraw

    height = max(f.shape[0] for f in frames)
    strip = np.concatenate([np.pad(f, ((0, height - f.shape[0]), (2, 2), (0, 0)),
                                   constant_values=255) for f in frames], axis=1)
    scale = max(1, 480 // strip.shape[0]) if strip.shape[0] < 160 else 1
    image = Image.fromarray(strip).resize((strip.shape[1] * scale, strip.shape[0] * scale),
                                          Image.NEAREST)
    canvas = Image.new('RGB', (image.width, image.height + 44), 'white')
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((6, image.height + 4), title, fill=(90, 90, 90))
    draw.text((6, image.height + 22), f'answer: {answer}', fill=(0, 0, 0))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    canvas.save(path)
    return path


def main(argv=None):
    args = parse_args(argv)
    if not osp.exists(args.clip):  # before the imports and the model: a typo costs no wait
        raise FileNotFoundError(2, 'no such video file or rawframe folder', args.clip)
    from mmllava.apis import LlavaInferencer, load_model
    from mmllava.apis.inference import print_answer
    from mmllava.apis.pipeline import build_inference_pipeline

    clip = load_clip(args.clip)
    start = time.perf_counter()
    model, _ = load_model(args.model, args.checkpoint, args.device, args.load_8bit,
                          decoder=args.decoder, decode_dtype=args.decode_dtype)
    inferencer = LlavaInferencer(model)
    result = inferencer([clip], args.question)[0]
    if args.show_prompt:
        print(f"prompt: {result['prompt']!r}")
    answer = print_answer(result)
    if 'pred_label' in result:
        scores = result['pred_scores']
        top = sorted(range(len(scores)), key=lambda i: -scores[i])[:3]
        names = inferencer.classes
        print('top-3: ' + ', '.join(f'{names[i]} ({scores[i]:.2f})' for i in top))
    if args.out:
        # The frames exactly as the model's pipeline sampled them (before resizing).
        loader = build_inference_pipeline(inferencer.model).transforms[0]
        sample = loader(dict(videos=[clip], images=[], sample_id=osp.basename(args.clip)))
        title = f'{osp.basename(args.clip)}: {len(sample["images"])} frames sampled'
        saved = save_frames_picture(sample['images'], answer, args.out, title)
        print(f'saved {saved}')
    print(f'({time.perf_counter() - start:.1f} s)')


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
