"""modelpvc: model weights from S3-compatible storage onto Kubernetes volumes, verified."""

__version__ = "0.1.0"
