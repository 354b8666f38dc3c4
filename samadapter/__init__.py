"""samadapter: SAM proposes masks, CLIP + Mask-Adapter names them from your own class list."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazy: `import samadapter` stays cheap; `samadapter.Segmenter` loads torch on first use.
    if name == "Segmenter":
        from samadapter.pipeline import Segmenter

        return Segmenter
    raise AttributeError(f"module 'samadapter' has no attribute {name!r}")


__all__ = ["Segmenter", "__version__"]
