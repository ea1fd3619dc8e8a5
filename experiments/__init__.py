"""Transfer-learning experiments with the pretrained backbone's BN in Train, Eval, Tune or Deploy mode.

engine: the command line and training loop every method shares; method: what a method is to the engine;
finetune, dann, cdan: the methods, each a `python -m experiments.<name>` entry point; models, modules, data,
checkpoint, utils: what the engine builds on; report: tables and plots of a sweep's TensorBoard logs; benchmark:
one training step per BN mode, measured.
"""
