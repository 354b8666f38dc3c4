"""samadapter: SAM proposes masks, CLIP + Mask-Adapter names them from your own class list."""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazy: `import samadapter` stays cheap; `samadapter.Segmenter` loads torch on first use.
    # The one place allowed to refer to modules above it (tests/test_imports.py).
    if name == "Segmenter":
        from samadapter.pipeline import Segmenter

        return Segmenter
    if name == "load_segmenter":
        from samadapter.models import load_segmenter

        return load_segmenter
    raise AttributeError(f"module 'samadapter' has no attribute {name!r}")


__all__ = ["Segmenter", "__version__", "load_segmenter"]
