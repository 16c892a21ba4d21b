"""Interpretability and inference for a study's trained trials (torch, captum, matplotlib; never Ray).

- ``explain.loading``: a trial (an id or ``best``) or a checkpoint file -> the trained model, its
  preprocessing and class names.
- ``explain.images``: image files (channel policy) and validation probes.
- ``explain.layers``: the layer Grad-CAM explains, found from the model's stages; the first convolution.
- ``explain.attributions``: Grad-CAM, occlusion and guided backpropagation maps (captum).
- ``explain.methods``: the methods by name (``gradcam``, ``occlusion``, ``guided``, ``filters``, ``grid``).
- ``explain.plots``: the PNG sheets.
- ``explain.study``: ``tlsweep explain`` (one trial, or the best trial per architecture x strategy side by side).
- ``explain.predict``: ``tlsweep predict`` (top-k classes, optional Grad-CAM).
"""
