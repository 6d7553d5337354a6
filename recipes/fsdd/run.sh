#!/usr/bin/env bash
# Free Spoken Digit Dataset: prep -> train -> evaluate -> transcribe a sample.
# Usage: recipes/fsdd/run.sh [--corpus-dir DIR] [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=fsdd
shared_name=fsdd
valid_split=dev
# 1,000 isolated digits by 52 synthetic voices on top of FSDD's five speakers: the leave-one-speaker-out
# mean CER falls from 25.8 % to 14.1 % with them (BENCHMARKS.md); skipped without espeak-ng and flite
synth_sentences="$(dirname "$0")/conf/digits.txt"
synth_count=1000
synth_weight=1
. "$(dirname "$0")/../common.sh"

. "$(dirname "$0")/../stages.sh"
