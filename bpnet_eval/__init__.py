"""bpnet-eval: score saved predictions of base-resolution genomics models against observed tracks."""

__version__ = "0.1.0"
