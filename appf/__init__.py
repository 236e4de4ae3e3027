"""appf: robot datasets in, re-annotated point-cloud Zarr shards and keyframe SFT records out."""

__version__ = "0.1.0"
