"""merkit: facial micro-expression recognition with honest, subject-independent evaluation."""

__version__ = "0.1.0"
