"""Storyteller: a terminal text adventure narrated by the Storyteller Spirit.

Importing this package (or any domain module in it) never imports torch,
transformers or textual; those are loaded only by the front ends that need them.
"""

__version__ = "0.1.0"
