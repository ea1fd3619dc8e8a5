"""The run directory's contract: its file names and the TensorBoard tags the engine writes, which the events
filter and the report read back. Plain constants (no torch), so that the report imports without it.

Tags under EPOCH_TAGS are stepped by epoch, all others by training iteration; FINAL_TAGS are written once, when a run
finishes. Every figure a method returns is logged as TRAIN_TAGS + its name, every timing as TIME_TAGS + its name.
"""

CONFIG, RESULTS, TEXT_LOG, CHECKPOINT, LOCK = "config.json", "results.json", "log.txt", "checkpoint.pt", ".lock"
EVENT_FILES = "events.out.tfevents.*"  # glob of TensorBoard's event files
TEMPORARY_SUFFIX = ".tmp"  # of the files write_atomically renames into place

TRAIN_TAGS, TIME_TAGS, EPOCH_TAGS, FINAL_TAGS = "train/", "time/", "eval/", "eval/best_"
ITER_TIME = f"{TIME_TAGS}iter_s"
KEPT_FOR_BACKWARD, STEP_PEAK, PEAK = "memory/kept_for_backward_mib", "memory/step_peak_mib", "memory/peak_mib"
UNREADABLE_IMAGES = "data/unreadable_images"
TARGET_ACC, TARGET_MEAN_CLASS_ACC = f"{EPOCH_TAGS}target_acc", f"{EPOCH_TAGS}target_mean_class_acc"
BEST_TARGET_ACC, BEST_TARGET_MEAN_CLASS_ACC = f"{FINAL_TAGS}target_acc", f"{FINAL_TAGS}target_mean_class_acc"
MAP50, BEST_MAP, BEST_MAP50 = f"{EPOCH_TAGS}map50", f"{FINAL_TAGS}map", f"{FINAL_TAGS}map50"  # detection
