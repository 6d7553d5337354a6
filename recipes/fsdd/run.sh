#!/usr/bin/env bash
# Free Spoken Digit Dataset: prep -> train -> evaluate -> transcribe a sample.
# Usage: recipes/fsdd/run.sh [--corpus-dir DIR] [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=fsdd
shared_name=fsdd
valid_split=dev
. "$(dirname "$0")/../common.sh"

. "$(dirname "$0")/../stages.sh"
