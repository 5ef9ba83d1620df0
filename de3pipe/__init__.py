"""de3pipe: distance-enhanced early exiting for BERT (DE3-BERT) and the strategies it is compared with."""

__version__ = "0.1.0"
