"""The Storyteller Spirit: the text-generation model and everything that talks to it.

Nothing in this package imports torch or transformers at import time; they are
imported inside the functions that load or build a model, on a background thread.
"""
