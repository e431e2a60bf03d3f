"""CSLR models: features [B, T, F] + lengths [B] -> raw CTC logits [B, T', V] and lengths [B].

Import the submodules directly (`signconsole.models.registry`, `.contract`, ...): this package
file stays empty so that profile validation (`models.names`) does not import torch.
"""
