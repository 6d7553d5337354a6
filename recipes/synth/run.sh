#!/usr/bin/env bash
# Synthetic English sentences (espeak-ng and flite; test voices unseen in training): prep -> train -> evaluate
# -> transcribe a sample. Needs `apt-get install espeak-ng flite`; reads and downloads nothing.
# Usage: recipes/synth/run.sh [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=synth
shared_name=""  # made, not read: no --corpus-dir
valid_split=dev
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/../stages.sh"
