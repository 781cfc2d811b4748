"""The Textual front end. Imports textual, never torch: the model loads in the background."""
