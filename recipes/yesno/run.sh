#!/usr/bin/env bash
# Kaldi's yes/no corpus (30 train / 30 test): prep -> train -> evaluate -> transcribe a sample.
# Usage: recipes/yesno/run.sh [--corpus-dir DIR] [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=yesno
shared_name=yesno
valid_split=train  # yes/no has no dev split: validate on the training files
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/../stages.sh"
