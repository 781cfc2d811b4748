"""The quest format (the world model), one module per part.

* `model`: the immutable values a loaded quest is made of;
* `schema`: the keys each part may have, and the limits;
* `loader`: YAML to `Quest`, with every mistake located;
* `rules`: conditions and effects;
* `parser`: what the player typed;
* `facts`, `lint`, `budget`: `storyteller validate`'s warnings;
* `map`: `storyteller map`.
"""
