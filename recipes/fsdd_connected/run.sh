#!/usr/bin/env bash
# Connected FSDD digits (1-10 per utterance, plus 20-60 s test_long): prep -> train -> evaluate
# (test and test_long) -> transcribe a sample.
# Usage: recipes/fsdd_connected/run.sh [--corpus-dir DIR] [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=fsdd_connected
shared_name=fsdd
valid_split=dev
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/../stages.sh"
