"""cellscreen: screen single blood-cell microscope images with deep learning."""

__version__ = "0.1.0"
