"""The APPF action expert's networks."""

from appf.training.model.expert import APPFExpert
from appf.training.model.point_encoder import PointEncoder
from appf.training.model.unet1d import ConditionalUnet1D

__all__ = ["APPFExpert", "ConditionalUnet1D", "PointEncoder"]
