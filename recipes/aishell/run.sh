#!/usr/bin/env bash
# AISHELL-1 (OpenSLR 33): Mandarin read by 400 speakers, official train / dev / test (dev and test
# speakers unseen in training). prep (the per-speaker .tar.gz archives unpacked under the data folder's
# downloads/) -> train (sized for one GPU: conf/train.yaml) -> character LM -> evaluate, CER -> transcribe
# a sample. --corpus-dir is the folder holding data_aishell/, data_aishell/ itself or data_aishell.tgz;
# without it the 15 GB data_aishell.tgz is downloaded from openslr.org and checked against its md5. Disk,
# all under EXP_DIR: about 20 GB of unpacked WAV (178 h); 15 GB more where data_aishell.tgz is unpacked (given
# or downloaded), and the download itself.
# Usage: recipes/aishell/run.sh [--corpus-dir DIR] [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=aishell
shared_name=aishell
valid_split=dev
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/../stages.sh"
