"""Transfer-learning experiments with the pretrained backbone's BN in Train, Eval, Tune or Deploy mode.

engine: the training loop every method shares; options (argtypes): its command line; method: what a method is to
the engine; finetune, dann, cdan: the methods, each a `python -m experiments.<name>` entry point; models (the
backbones), bn_modes, classifier, modules, optim, data, evaluation, memory: what the engine builds and measures with;
layout: the run directory's file and tag names; checkpoint, atomic, rundir, events, textlog, signals: how a run
survives interruptions and leaves clean files; report: tables and plots of a sweep's logs.
"""

import sys

if sys.argv[:1] == ["-m"]:  # `python -m experiments.<name>` is starting: a signal during its imports ends it cleanly
    from experiments import signals

    signals.exit_at_once()
