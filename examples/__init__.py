"""Worked examples from the lesson this toolchain grew from (see README, "Worked examples").

Run them from the repository root:

    python -m examples.xo_cnn                       # a CNN small enough to check by hand
    python -m examples.imagenet_predict shirt.jpg   # why ImageNet alone does not fit the job
"""
