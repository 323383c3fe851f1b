"""mymodel: a KServe-style model package -- ``trainer`` makes the model, ``inferencer`` serves it.

Rename the package to your model's name; the iris classifier here is the example to replace.
"""
