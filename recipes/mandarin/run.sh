#!/usr/bin/env bash
# Synthetic Mandarin (asr prep mandarin: real recorded syllables of gcin-voice's two speakers joined into
# sentences, and espeak-ng's pinyin voice; test espeak-ng voices unseen in training): prep -> train ->
# evaluate on the test split and on the 7 real Mandarin clips in ../shared/data/clips -> transcribe a sample.
# Needs `apt-get install espeak-ng gcin-voice` (and pypinyin, installed by setup.sh); downloads nothing.
# Usage: recipes/mandarin/run.sh [--exp-dir DIR] [--stage N] [--stop-stage N] [--set KEY=VALUE]
corpus=mandarin
shared_name=""  # made, not read: no --corpus-dir
valid_split=dev
. "$(dirname "$0")/../common.sh"
. "$(dirname "$0")/../stages.sh"
clips="$repo/../shared/data/clips"
if run_stage 6 && [ -e "$clips" ]; then
  echo "== stage 6: evaluation on the real Mandarin clips ($clips)"
  $asr prep clips --corpus-dir "$clips" --lang zh --out "$data_dir/clips"
  $asr evaluate --model "$exp_dir/model.pt" --manifest "$data_dir/clips/test.jsonl" --out "$exp_dir/eval_clips" \
    --overwrite ${decode_options[@]+"${decode_options[@]}"}
fi
