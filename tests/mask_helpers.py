"""Shared helpers of the mask tests: a tiny random-weight Sam2VideoModel (the real transformers
class, shrunken), and moving-shape videos with exact ground truth."""

from __future__ import annotations

import numpy as np


def tiny_sam2_model(image_size: int = 128, seed: int = 0):
    """Sam2VideoModel with a 4-block Hiera and one memory-attention layer (~3.5M params).
    The memory path keeps SAM 2's 256/64 channel sizes (transformers hard-codes kv_in_dim=64)."""
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    s = image_size
    cfg = Sam2VideoConfig(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(
                model_type="sam2_hiera_det_model", image_size=[s, s], hidden_size=16,
                blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
                num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[8, 4, 4, 2],
                global_attention_blocks=[3]),
            backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]]),
        prompt_encoder_config=dict(image_size=s),
        mask_decoder_config=dict(mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
        image_size=s, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_fuser_intermediate_dim=64)
    torch.manual_seed(seed)
    return Sam2VideoModel(cfg).eval()


def two_squares_video(T: int = 6, h: int = 48, w: int = 64, seed: int = 0):
    """A red square moving right and a static blue one on a grey textured background:
    rgb (T, h, w, 3) uint8 and ground truth {1: red masks, 2: blue masks} (T, h, w) bool."""
    rng = np.random.default_rng(seed)
    base = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
    rgb = np.repeat(base[None], T, axis=0)
    red = np.zeros((T, h, w), bool)
    blue = np.zeros((T, h, w), bool)
    for t in range(T):
        x = 4 + 2 * t
        red[t, 8:22, x:x + 14] = True
        blue[t, 28:42, 40:54] = True
    rgb[red] = (220, 30, 30)
    rgb[blue] = (30, 30, 220)
    return rgb, {1: red, 2: blue}


class StandInRoboEngine:
    """STAND-IN for RoboEngine's text-prompted segmentation (the real one needs a source
    checkout and ~6 GB of weights that cannot be installed here). Same contract as
    appf.annotators.masks.roboengine.TextPromptedSegmenter: segment(rgb, prompt) -> (H, W) bool.
    It answers from ground truth registered per frame (looked up by the frame's bytes), with
    optional corruption of chosen frames, so that everything around RoboEngine runs for real."""

    weights_id = "stand-in-roboengine"
    revision = "test"

    def __init__(self):
        self.answers: dict[tuple[bytes, str], np.ndarray] = {}
        self.calls = 0

    def add(self, rgb: np.ndarray, prompt: str, masks: np.ndarray) -> None:
        for frame, mask in zip(rgb, masks):
            self.answers[(frame.tobytes(), prompt)] = np.asarray(mask, bool)

    def load(self) -> None:
        return None

    def segment(self, rgb: np.ndarray, prompt: str) -> np.ndarray:
        self.calls += 1
        return self.answers.get((rgb.tobytes(), prompt), np.zeros(rgb.shape[:2], bool))
