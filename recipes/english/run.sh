#!/usr/bin/env bash
# One English model from all the English speech here: speechocean762 sentences, FSDD digits, yes/no,
# connected digits (and synthetic sentences when espeak-ng and flite are installed), so that asr transcribe
# handles digits and sentences alike. prep -> train on every corpus at once (conf/train.yaml weighs them)
# -> evaluate each corpus' test split and the English clips in ../shared/data/clips -> transcribe a sample.
# Usage: recipes/english/run.sh [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=english
shared_name=""  # several corpora: each is found below
. "$(dirname "$0")/../common.sh"
shared="$repo/../shared/data"
corpora=(speechocean762 fsdd yesno fsdd_connected)
# how often an epoch draws each corpus' utterances: sentences once, the digit corpora in about the
# share their hours deserve next to the sentences, yes/no's 30 files twice
declare -A weight=([speechocean762]=1 [fsdd]=0.5 [yesno]=2 [fsdd_connected]=0.5 [synth]=0.5)
if command -v espeak-ng >/dev/null && command -v flite >/dev/null; then corpora+=(synth)
else echo "run.sh: espeak-ng or flite missing: training without the synthetic sentences" >&2; fi
source_of() {  # the --corpus-dir (or download folder) option for one corpus
  case "$1" in
    synth) ;;
    fsdd_connected) [ -e "$shared/fsdd" ] && echo --corpus-dir "$shared/fsdd" || echo --download-dir "$exp_dir/downloads" ;;
    *) [ -e "$shared/$1" ] && echo --corpus-dir "$shared/$1" || echo --download-dir "$exp_dir/downloads" ;;
  esac
}
if run_stage 1; then
  echo "== stage 1: data preparation (${corpora[*]}, clips)"
  for c in "${corpora[@]}"; do $asr prep "$c" $(source_of "$c") --out "$data_dir/$c"; done
  $asr prep clips --corpus-dir "$shared/clips" --lang en --out "$data_dir/clips"
fi
if run_stage 2; then
  echo "== stage 2: training on ${corpora[*]} (weights above)"
  train=(); valid=(); weights_of=()
  for c in "${corpora[@]}"; do
    train+=("$data_dir/$c/train.jsonl"); weights_of+=("${weight[$c]}")
    [ -f "$data_dir/$c/dev.jsonl" ] && valid+=("$data_dir/$c/dev.jsonl")
  done
  weights=$(IFS=,; echo "[${weights_of[*]}]")
  resume=(); [ -f "$exp_dir/checkpoints/last.pt" ] && resume=(--resume)
  $asr train --config "$config" --train "${train[@]}" --valid "${valid[@]}" --exp-dir "$exp_dir" "${resume[@]}" \
    --set "train_weights=$weights" ${extra_train[@]+"${extra_train[@]}"}
fi
if run_stage 4; then
  echo "== stage 4: evaluation on each test split and the English clips"
  for c in "${corpora[@]}" clips; do
    $asr evaluate --model "$exp_dir/model.pt" --manifest "$data_dir/$c/test.jsonl" --out "$exp_dir/eval_$c" --overwrite
  done
fi
if run_stage 5; then
  echo "== stage 5: transcribing a sample"
  $asr transcribe --model "$exp_dir/model.pt" "$shared/clips/en/whisper_jfk.flac"
fi
