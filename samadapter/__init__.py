"""samadapter: SAM proposes masks, CLIP + Mask-Adapter names them from your own class list."""

__version__ = "0.1.0"
