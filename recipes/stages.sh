# The stages every recipe runs; sourced by run.sh after common.sh.
# A recipe that sets synth_sentences (a file of lines), synth_count and synth_weight also trains on that
# many takes of those lines by espeak-ng and flite voices (asr prep synth), drawn synth_weight times per epoch.
synth_dir="$data_dir/synth"
if run_stage 1; then
  echo "== stage 1: data preparation"
  $asr prep "$corpus" $(prep_source) --out "$data_dir" ${prep_options[@]+"${prep_options[@]}"}
  if [ -n "${synth_sentences:-}" ]; then
    if command -v espeak-ng >/dev/null && command -v flite >/dev/null; then
      $asr prep synth --sentences "$synth_sentences" --num-train "$synth_count" --num-dev 0 --num-test 0 \
        --out "$synth_dir"
    else
      echo "run.sh: espeak-ng or flite missing (apt-get install espeak-ng flite): training without synthetic voices" >&2
    fi
  fi
fi
train_manifests=("$data_dir/train.jsonl")
if [ -n "${synth_sentences:-}" ] && [ -f "$synth_dir/train.jsonl" ]; then
  train_manifests+=("$synth_dir/train.jsonl")
  extra_train=("train_weights=[1,$synth_weight]" ${extra_train[@]+"${extra_train[@]}"})
fi
if run_stage 2; then
  # training ends by writing model.pt, the average of the best `average_best` checkpoints (conf/train.yaml),
  # so there is no averaging stage; stage 3 trains a language model where the recipe has conf/lm.yaml
  echo "== stage 2: training (checkpoints in $exp_dir/checkpoints, model.pt averaged from the best)"
  resume=(); [ -f "$exp_dir/checkpoints/last.pt" ] && resume=(--resume)
  $asr train --config "$config" --train "${train_manifests[@]}" --valid "$data_dir/$valid_split.jsonl" \
    --exp-dir "$exp_dir" "${resume[@]}" ${extra_train[@]+--set "${extra_train[@]}"}
fi
# a recipe with conf/lm.yaml trains a character language model (stage 3) and decodes with it
lm_config=$(dirname "$config")/lm.yaml
lm_options=()
if [ -f "$lm_config" ]; then
  lm_options=(--lm "$exp_dir/lm.pt")
  if run_stage 3; then
    echo "== stage 3: character language model on the training transcripts (fused into beam search)"
    $asr train-lm --config "$lm_config" --model "$exp_dir/model.pt" --text "$data_dir/train.jsonl" \
      --valid-text "$data_dir/$valid_split.jsonl" --out "$exp_dir/lm.pt" --overwrite
  fi
fi
if run_stage 4; then
  echo "== stage 4: evaluation on the test split (and on test_long, the long-form one, where there is one)"
  for split in test test_long; do
    if [ -f "$data_dir/$split.jsonl" ]; then
      $asr evaluate --model "$exp_dir/model.pt" --manifest "$data_dir/$split.jsonl" --out "$exp_dir/eval_$split" \
        --overwrite --record ${lm_options[@]+"${lm_options[@]}"} ${decode_options[@]+"${decode_options[@]}"} \
        ${eval_options[@]+"${eval_options[@]}"}
    fi
  done
fi
if run_stage 5; then
  echo "== stage 5: transcribing a sample"
  sample=$(head -n 1 "$data_dir/test.jsonl" | "$python" -c "import json,sys; print(json.loads(sys.stdin.read())['audio'])")
  $asr transcribe --model "$exp_dir/model.pt" "$sample" ${lm_options[@]+"${lm_options[@]}"} \
    ${decode_options[@]+"${decode_options[@]}"}
fi
