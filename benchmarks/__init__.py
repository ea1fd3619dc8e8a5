"""Measurements of tune itself: the training-step benchmark and the model-zoo surveys.

    python -m benchmarks --model resnet50 --batch-size 16 --resolution 160   # every BN mode and the peers
    python -m benchmarks.pairs_and_memory                                    # pairs and kept memory per model
    nice -n 19 python -m benchmarks.survey                                   # every model: crashes, exactness

models: the randomly initialised models with realistic BN statistics; modes: how each mode is prepared;
measure: the figures; report: ratios, table, chart and JSON; __main__: the benchmark's command line.
"""
