"""Summarise a sweep's run directories into tables like the paper's TLlib table, and one-panel PNG figures.

Usage: python -m experiments.report LOGDIR [--out DIR] [--benchmark JSON]

A run directory holds config.json (what ran: method, dataset, task, arch, bn_mode, seed, device, ...), the
TensorBoard events it logged and, once it finished, results.json. Per dataset, backbone and device there is one
table: per task and method, rows Train -> Eval -> Tune (-> Deploy) with target accuracy, memory and time, each with
its change versus Train and versus Eval. Finished runs that differ only in seed are averaged (mean ± std); runs
without results.json are in progress: listed under their table, never averaged. A run whose config.json is
missing or not JSON is skipped with a warning. When LOGDIR holds benchmark.json (written by
`python -m benchmarks ... --json LOGDIR/benchmark.json`), its interleaved ms/step is quoted beside the runs' s/iter.

Detection runs (experiments.detection) get tables of their own in the shape of the paper's MMDetection table: per
task, detector, backbone and device, rows Eval -> Tune (then Train, Frozen, Deploy where run) with mAP, memory and
time, each with its change versus Eval.

Modules: sweep reads the run directories and the benchmark JSON, table averages them and lays out the Markdown,
figures draws the PNGs, detection does both for detection runs, __main__ is the command line.
"""
