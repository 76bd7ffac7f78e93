"""Chat with a LLaVA in the browser (Gradio): upload images or clips, answers streamed.

Needs gradio: ``pip install -e ".[web]"`` (pinned in requirements/web.txt). Binds to
127.0.0.1 unless told otherwise.

Example:
    python demo/web_app.py configs/llava/llava-tiny_vqa.py --port 7860
    python demo/web_app.py llava-7b-v1.5_vqa --device cuda:0
"""
import os
import time

TITLE = 'LLaVA chat (mmllava)'


def parse_args(argv=None):
    from mmllava.utils.cli import add_model_arguments, make_parser

    parser = make_parser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to bind (0.0.0.0 exposes the app to the network)')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--max-new-tokens', type=int, default=512,
                        help='longest answer in tokens (less where the context runs out)')
    return parser.parse_args(argv)


def _file_path(item) -> str:
    # Gradio gives uploads as paths or as dicts with a path, depending on the version.
    return item if isinstance(item, str) else item.get('path') or item.get('name')


def build_app(model, trained: bool = True, max_new_tokens: int = 512):
    """The Gradio Blocks app around ``model``: one conversation per browser session.

    Each browser session holds a :class:`mmllava.apis.ChatSession` (made at its first
    message), so the app answers exactly as the terminal demo and the Python API do.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        trained (bool): Whether it has trained weights (a note is shown otherwise).
        max_new_tokens (int): The answer length limit (the slider's maximum).
    """
    import gradio as gr

    from mmllava.apis import ChatSession
    from mmllava.apis.inference import is_video, load_input

    def respond(message, history, session, new_tokens, temperature):
        session = session or ChatSession(model)
        history = list(history or [])
        text = (message or {}).get('text', '').strip()
        for path in [_file_path(f) for f in (message or {}).get('files', []) or []]:
            history.append(dict(role='user', content={'path': path}))
            try:  # attached to the next question; a file that cannot be read is said at once
                visual = load_input(path, os.path.basename(path))  # .npy as the API reads it
                (session.add_video if is_video(visual) else session.add_image)(visual)
            except (FileNotFoundError, ValueError, TypeError) as e:
                history.append(dict(role='assistant', content=f'Error: {e}'))
        if not text:  # visuals only: they go with the next question
            yield gr.MultimodalTextbox(value=None), history, session
            return
        history.append(dict(role='user', content=text))
        gen = dict(max_new_tokens=int(new_tokens))
        if temperature and temperature > 0:
            gen.update(do_sample=True, temperature=float(temperature))
        try:
            pieces = session.stream(text, **gen)
        except ValueError as e:
            # The visuals stay attached: the user can ask again, shorter or after a reset.
            history.append(dict(role='assistant', content=f'Error: {e}'))
            yield gr.MultimodalTextbox(value=None), history, session
            return
        history.append(dict(role='assistant', content=''))
        answer = ''
        for piece in pieces:  # the session keeps the answer once the stream ends
            answer += piece
            history[-1] = dict(role='assistant', content=answer)
            yield gr.MultimodalTextbox(value=None), history, session
        yield gr.MultimodalTextbox(value=None), history, session

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f'## {TITLE}\nUpload images or clips with the paperclip button and ask '
                    'about them; later questions still see them. Each upload goes with your '
                    'next question.')
        if not trained:
            gr.Markdown('**Note:** no weights were given: this model answers with random '
                        'weights.', elem_id='random-weights-note')
        chatbot = gr.Chatbot(elem_id='chatbot', label='Conversation', height=480)
        box = gr.MultimodalTextbox(elem_id='chat-input', file_types=['image', 'video'],
                                   file_count='multiple', show_label=False,
                                   placeholder='Ask about the image or clip ...')
        with gr.Row():
            new_tokens = gr.Slider(1, max(max_new_tokens, 1), value=max_new_tokens, step=1,
                                   label='Max new tokens')
            temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05,
                                    label='Temperature (0: greedy)')
            reset = gr.Button('New conversation', elem_id='reset')
        state = gr.State(None)  # the browser session's ChatSession
        box.submit(respond, [box, chatbot, state, new_tokens, temperature],
                   [box, chatbot, state])
        reset.click(lambda: ([], None, None), None, [chatbot, state, box])
    return app


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # offline: no telemetry calls
    from mmllava.apis import load_model

    start = time.perf_counter()
    model, trained = load_model(args.model, args.checkpoint, args.device, args.load_8bit,
                          decoder=args.decoder, decode_dtype=args.decode_dtype)
    print(f'loaded {args.model} in {time.perf_counter() - start:.1f} s')
    app = build_app(model, trained, args.max_new_tokens)
    # One answer at a time: requests share the one model.
    app.queue(default_concurrency_limit=1).launch(server_name=args.host,
                                                  server_port=args.port, share=False)


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
