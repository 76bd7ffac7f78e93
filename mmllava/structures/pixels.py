"""Pixel statistics of the vision encoders."""

# OpenAI CLIP statistics (transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The original computes tuple(int(x * 255) for x in image_processor.image_mean): truncation.
CLIP_MEAN_RGB = tuple(int(x * 255) for x in CLIP_MEAN)  # (122, 116, 104)
