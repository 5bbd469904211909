"""Content intelligence for clip_ai: image, video and text embeddings and what they tell.

- :mod:`models.clip.imagenet`: EfficientNet-Lite0 ImageNet tower (1280-d features, 1000 labels).
- :mod:`models.clip.text`: MiniLM sentence embeddings (384-d).
- :mod:`models.clip.bridge`: ImageNet labels -> MiniLM space (text search finds images).
- :mod:`models.clip.openclip`: open_clip towers from a configured checkpoint.
- :mod:`models.clip.media`: decoding uploads, technical quality.
- :mod:`models.clip.understanding`, :mod:`models.clip.taxonomy`: categories, alt-text, hashtags.
- :mod:`models.clip.enrich`: :class:`ContentModels`, everything clip_ai loads, batched.
- :mod:`models.clip.evaluate`, :mod:`streams.bench.clip`, :mod:`models.clip.head`: eval, bench, training.

Modules import torch lazily where they can; import the submodule you need.
"""
