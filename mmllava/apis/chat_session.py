"""A multi-turn conversation kept for the caller: history, attached images and clips.

The terminal demo and the web app hold one :class:`ChatSession` per conversation; every answer
is :func:`mmllava.apis.chat.chat`'s, so a session answers exactly as the stateless call does on
the same history.
"""
import copy
from pathlib import Path
from typing import Iterator, List, Optional

import torch

from .chat import chat
from .chat_inputs import VisualType


class ChatSession:
    """A multi-turn conversation with a LLaVA: history, attached images and clips.

    Visuals added with :meth:`add_image` / :meth:`add_video` go with the next user message,
    their placeholders put before its text as LLaVA does (``'<image>\\nWhat is it?'``); later
    text-only questions keep every earlier visual in context.

    Args:
        model: A LLaVA from :func:`mmllava.apis.get_model`.
        system (str, optional): A system message; ``None`` keeps the template's own.
        **generate_kwargs: Default transformers ``generate`` keywords for every answer.
    """

    def __init__(self, model: torch.nn.Module, system: Optional[str] = None,
                 **generate_kwargs):
        if model.tokenizer is None:
            raise ValueError('ChatSession needs a model with a tokenizer')
        self.model = model
        self.system = system
        self.generate_kwargs = generate_kwargs
        self.reset()

    def reset(self) -> None:
        """Forget the history, the visuals and any visual not yet sent."""
        self._messages: List[dict] = []
        self.images: List[VisualType] = []
        self.videos: List[VisualType] = []
        self._pending: List[tuple] = []

    @property
    def messages(self) -> List[dict]:
        """The history (system message first if given), visuals written as placeholders."""
        system = [] if self.system is None else [dict(role='system', content=self.system)]
        return copy.deepcopy(system + self._messages)

    @property
    def pending(self) -> List[str]:
        """Kinds (``'image'`` / ``'video'``) of visuals waiting for the next user message."""
        return [kind for kind, _ in self._pending]

    @staticmethod
    def _check_source(source: VisualType) -> None:
        if isinstance(source, (str, Path)) and not Path(source).exists():
            raise FileNotFoundError(f'No such file or folder: {str(source)!r}')

    def add_image(self, source: VisualType) -> None:
        """Attach an image (path, PIL image or (H, W, 3) array) to the next user message.

        Raises:
            FileNotFoundError: A path that does not exist.
            ValueError: A file that is not a readable image.
        """
        self._check_source(source)
        if isinstance(source, (str, Path)):
            # Read now, so a bad file is reported when attached, not at the next question.
            from mmllava.datasets.transforms.loading import load_image
            load_image(str(source))
        self._pending.append(('image', source))

    def add_video(self, source: VisualType) -> None:
        """Attach a clip (video file, rawframe folder or (T, H, W, 3) array) to the next message.

        Raises:
            FileNotFoundError: A path that does not exist.
            ValueError: A file or folder that holds no readable frames.
        """
        self._check_source(source)
        if isinstance(source, (str, Path)):
            from mmllava.datasets.transforms.video import load_video_frames
            load_video_frames(str(source), num_frames=1)  # one frame: cheap, proves it decodes
        self._pending.append(('video', source))

    def _request(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise ValueError('Ask something: the question is empty')
        placeholders = ''.join(f'<{kind}>\n' for kind, _ in self._pending)
        user = dict(role='user', content=placeholders + text)
        images = self.images + [s for kind, s in self._pending if kind == 'image']
        videos = self.videos + [s for kind, s in self._pending if kind == 'video']
        return self.messages + [user], images, videos

    def _commit(self, messages: List[dict], images: list, videos: list, answer: str) -> None:
        self._messages.append(messages[-1])
        self._messages.append(dict(role='assistant', content=answer))
        self.images, self.videos, self._pending = images, videos, []

    def ask(self, text: str, **generate_kwargs) -> str:
        """Answer a question about everything so far (and the visuals just attached).

        Args:
            text (str): The question.
            **generate_kwargs: transformers ``generate`` keywords for this answer.

        Returns:
            str: The answer. The history keeps the question and the answer; on an error
            neither is kept and attached visuals stay pending.
        """
        messages, images, videos = self._request(text)
        answer = chat(self.model, messages, images, videos,
                      **{**self.generate_kwargs, **generate_kwargs})
        self._commit(messages, images, videos, answer)
        return answer

    def stream(self, text: str, **generate_kwargs) -> Iterator[str]:
        """As :meth:`ask`, yielding text pieces as they are generated.

        Inputs are checked at the call (a bad request raises before the first piece). The
        history gets the answer once the stream ends; a stream closed early keeps the part
        generated so far.
        """
        messages, images, videos = self._request(text)
        pieces = chat(self.model, messages, images, videos, stream=True,
                      **{**self.generate_kwargs, **generate_kwargs})

        def run():
            answer = []
            try:
                for piece in pieces:
                    answer.append(piece)
                    yield piece
            except GeneratorExit:
                self._commit(messages, images, videos, ''.join(answer))
                raise
            self._commit(messages, images, videos, ''.join(answer))

        return run()
