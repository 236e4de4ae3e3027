"""The expert as a policy: diffusion loss for training, denoising for inference.

``ExpertPolicy.load(ckpt).predict(observation, guidance)`` turns raw observations (metres,
base frame) and a raw guidance pose into raw actions (the source's action units). Training uses
diffusers' ``DDPMScheduler``; inference uses ``DDIMScheduler`` (``num_inference_steps``,
deterministic, eta 0) on the same noise schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from appf.training.checkpoint import load_checkpoint
from appf.training.config import ExpertConfig
from appf.training.errors import TrainingError
from appf.training.guidance import add_guidance_noise, align_quaternion_signs
from appf.training.model.expert import APPFExpert
from appf.training.normalizer import Normalizer
from appf.training.shards import DataSpec


def make_schedulers(cfg: ExpertConfig) -> tuple[DDPMScheduler, DDIMScheduler]:
    common = dict(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                  clip_sample=True, prediction_type=cfg.prediction_type)
    return (DDPMScheduler(variance_type="fixed_small", **common),
            DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **common))


class ExpertPolicy:
    def __init__(self, cfg: ExpertConfig, spec: DataSpec, normalizer: Normalizer,
                 model: APPFExpert | None = None):
        self.cfg, self.spec, self.normalizer = cfg, spec, normalizer
        self.model = model if model is not None else APPFExpert(cfg, spec)
        self.train_scheduler, self.inference_scheduler = make_schedulers(cfg)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ training
    def compute_loss(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None,
                     module: torch.nn.Module | None = None) -> torch.Tensor:
        """MSE of the denoiser on a normalised batch (keys as ExpertWindowDataset gives them).

        Draws timesteps, diffusion noise and guidance noise (``cfg.guidance_noise_std``) from
        ``generator`` (a CPU generator; tensors are moved to the batch's device). ``module`` is the
        (possibly DDP-wrapped) model to run; default ``self.model``."""
        module = module if module is not None else self.model
        action = batch["action"]
        B = action.shape[0]
        dev = action.device
        noise = torch.randn(action.shape, generator=generator).to(dev)
        t = torch.randint(0, self.cfg.num_train_timesteps, (B,), generator=generator).to(dev)
        noisy = self.train_scheduler.add_noise(action, noise, t)
        guidance = add_guidance_noise(batch["guidance"], self.cfg.guidance_noise_std, generator)
        pc = batch.get("point_cloud") if self.cfg.use_point_cloud else None
        if self.cfg.use_point_cloud and pc is None:
            raise TrainingError("phase 'finetune' needs batches with 'point_cloud'")
        pred = module(noisy, t, batch["state"], guidance, pc)
        target = action if self.cfg.prediction_type == "sample" else noise
        return F.mse_loss(pred, target)

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def sample(self, state: torch.Tensor, guidance: torch.Tensor, point_cloud: torch.Tensor | None,
               num_inference_steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoise normalised actions (B, horizon, D) from normalised conditioning (DDIM)."""
        model = self.model
        cond = model.encode(state, guidance, point_cloud if self.cfg.use_point_cloud else None)
        B = state.shape[0]
        x = torch.randn((B, self.cfg.horizon, self.spec.action_dim), generator=generator).to(cond.device)
        sched = self.inference_scheduler
        sched.set_timesteps(num_inference_steps or self.cfg.num_inference_steps)
        for t in sched.timesteps:
            out = model.denoise(x, t.to(cond.device), cond)
            x = sched.step(out, t, x).prev_sample
        return x

    def _tensor(self, x: Any, name: str, shape_tail: tuple[int | None, ...]) -> tuple[torch.Tensor, bool]:
        a = torch.as_tensor(np.asarray(x, dtype=np.float32))
        batched = a.ndim == len(shape_tail) + 1
        if not batched:
            a = a.unsqueeze(0)
        if a.ndim != len(shape_tail) + 1 or any(
                want is not None and got != want for got, want in zip(a.shape[1:], shape_tail)):
            want = "x".join("N" if w is None else str(w) for w in shape_tail)
            raise TrainingError(f"predict: {name} must be ({want}) or (B, {want}), got {tuple(np.shape(x))}")
        return a.to(self.device), batched

    @torch.no_grad()
    def predict(self, observation: Mapping[str, Any], guidance: Any, *,
                num_inference_steps: int | None = None, seed: int | None = 0,
                full_horizon: bool = False) -> np.ndarray:
        """Actions for one observation (or a batch), in raw units.

        ``observation["state"]``: (n_obs_steps, 8 x arms) (TCP xyz m, quat xyzw, gripper 0..1 per
        arm); ``observation["point_cloud"]``: (n_obs_steps, N, >=3) xyz metres in the base frame
        (needed in phase 2, ignored in phase 1); ``guidance``: (arms, 7) or (7 x arms,) pose
        (xyz m, quat xyzw, base frame) on the guidance spline at the time of the last step of
        the predicted horizon, i.e. ``horizon - n_obs_steps`` control steps after the current
        step (clamped to the last waypoint), as in training; its quaternion sign does not matter.
        A leading batch axis B is allowed on all three. Returns (n_action_steps, D) actions from
        the current step on, or all (horizon, D) with ``full_horizon``; with B: (B, ..., D).
        ``seed`` fixes the initial noise (None: random)."""
        cfg, n = self.cfg, self.normalizer
        self.model.eval()
        state, batched = self._tensor(observation["state"], "observation['state']",
                                      (cfg.n_obs_steps, self.spec.state_dim))
        g = np.asarray(guidance, dtype=np.float32)
        if g.ndim >= 2 and g.shape[-2:] == (self.spec.arms, 7):   # (arms, 7) -> (7 x arms,)
            g = g.reshape(*g.shape[:-2], -1)
        guid, _ = self._tensor(g, "guidance", (self.spec.guidance_dim,))
        if guid.shape[0] != state.shape[0]:
            raise TrainingError(f"predict: batch sizes differ: state {state.shape[0]}, "
                                f"guidance {guid.shape[0]}")
        # q and -q are one rotation: use the hemisphere of the current state's quaternion, as in training.
        guid = torch.as_tensor(align_quaternion_signs(guid.cpu().numpy(), state[:, -1].cpu().numpy()),
                               device=guid.device)
        pc = None
        if cfg.use_point_cloud:
            if observation.get("point_cloud") is None:
                raise TrainingError("predict: this expert is fine-tuned on point clouds; pass "
                                    "observation['point_cloud'] (n_obs_steps, N, 3+) in metres, base frame")
            pc, _ = self._tensor(observation["point_cloud"], "observation['point_cloud']",
                                 (cfg.n_obs_steps, None, None))
            pc = n.normalize("point_cloud", pc[..., :3])
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        x = self.sample(n.normalize("state", state), n.normalize("guidance", guid), pc,
                        num_inference_steps, gen)
        actions = n.unnormalize("action", x).cpu().numpy()
        if not full_horizon:
            start = cfg.n_obs_steps - 1
            actions = actions[:, start: start + cfg.n_action_steps]
        return actions if batched else actions[0]

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], use_ema: bool = True,
                        device: str | torch.device = "cpu") -> "ExpertPolicy":
        cfg = ExpertConfig.from_dict(ckpt["config"])
        policy = cls(cfg, DataSpec.from_dict(ckpt["data_spec"]), Normalizer.from_dict(ckpt["normalizer"]))
        policy.model.load_state_dict(ckpt["model"])
        if use_ema and ckpt.get("ema") is not None:
            shadow = ckpt["ema"]["shadow_params"]
            params = list(policy.model.parameters())
            if len(shadow) != len(params):
                raise TrainingError(f"checkpoint {ckpt.get('path')}: EMA holds {len(shadow)} tensors, "
                                    f"the model has {len(params)} parameters")
            with torch.no_grad():
                for p, s in zip(params, shadow):
                    p.copy_(s)
        policy.model.to(device).eval()
        return policy

    @classmethod
    def load(cls, path: str | Path, use_ema: bool = True,
             device: str | torch.device = "cpu") -> "ExpertPolicy":
        """Load a checkpoint file or the latest checkpoint of a run folder (EMA weights by default)."""
        return cls.from_checkpoint(load_checkpoint(path), use_ema=use_ema, device=device)
