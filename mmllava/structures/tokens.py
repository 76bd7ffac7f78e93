"""Placeholder strings and the special ids of token sequences."""

IMAGE_PLACEHOLDER = '<image>'  # an image's place in a message (LLaVA's DEFAULT_IMAGE_TOKEN)
VIDEO_PLACEHOLDER = '<video>'  # where a clip's tokens go
VISUAL_PLACEHOLDERS = (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER)

IMAGE_TOKEN_INDEX = -200  # the original's placeholder id: outside every text vocabulary
IGNORE_INDEX = -100  # label of positions without loss (torch's cross entropy default)
