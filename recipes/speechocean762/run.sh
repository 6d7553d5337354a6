#!/usr/bin/env bash
# speechocean762 (OpenSLR 101): English sentences read by Mandarin-L1 children and adults; dev and test
# speakers are unseen in training. prep -> train (bounded by max_minutes) -> evaluate, with CER per age
# group -> transcribe a sample.
# Usage: recipes/speechocean762/run.sh [--corpus-dir DIR] [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=speechocean762
shared_name=speechocean762
valid_split=dev
eval_options=(--group-by age_group gender)
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/../stages.sh"
