# LLaVA-1.6 (LLaVA-NeXT) Vicuna-7B: LLaVA-1.5-7B's architecture (CLIP ViT-L/14-336, layer -2,
# patch tokens; mlp2x_gelu; Vicuna-7B-v1.5) with anyres images (base view + up to 2x2 / 1x3 /
# 3x1 tiles of 336 px, unpadded, an image_newline a row). Vocabulary rows of
# llava-hf/llava-v1.6-vicuna-7b-hf (32064: LLaMA's 32000, <image> and <pad>, padded to 64); a
# converted folder's config.py is written from its own config.json and weights.
_base_ = ['./llava-7b-v1.5.py']
image_size = 336
anyres = dict(
    image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
    tile_size=336, patches_per_side=24)
model = dict(llm=dict(config=dict(vocab_size=32064)), anyres=anyres)
