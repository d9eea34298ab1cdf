"""Tools built around the decoding library (``core``): the benchmark, the trainers, the scene
generator, the real-pair builder, the draft-shape tuner and the tiny test models.

``core`` never imports ``tools``; each tool is a ``python -m tools.<name>`` command.
"""
