"""``samadapter app``: a local web page to try classes on a photo and browse a run.

The page is one hand-written HTML file served by the standard library's threaded HTTP server
(:mod:`samadapter.app.server`); everything that touches the models runs on one worker thread,
one image's work per job (:mod:`samadapter.app.jobs`). A photo's vocabulary-free work (SAM's
masks, CLIP's dense features, the mask embeddings) is done once and kept
(:mod:`samadapter.app.photo`), so a change of classes or keep rule is a relabel through
:meth:`samadapter.pipeline.Segmenter.classify`. A run folder is browsed from its files
(:mod:`samadapter.app.runs`) and relabelled by the ``relabel`` command itself.
"""
