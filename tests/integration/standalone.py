"""Imported first by the scripts that run on their own (chaos.py, faults.py): the environment
harness reads on import, with the defaults ctest would give -- build/trailhook, the source tree
and its fixtures."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

os.environ.setdefault("TRAILHOOK_BIN", os.path.join(ROOT, "build", "trailhook"))
os.environ.setdefault("TH_SOURCE_DIR", ROOT)
os.environ.setdefault("TH_FIXTURES", os.path.join(ROOT, "tests", "fixtures"))
