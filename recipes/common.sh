# Shared by the recipes' run.sh: option parsing, the asr command, and stage control.
# A recipe sets `corpus`, `shared_name` and its defaults (optionally `decode_options`, extra flags for
# asr evaluate and asr transcribe, and `eval_options`, for asr evaluate alone), sources this file, then
# runs its stages.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stage=0
stop_stage=100
corpus_dir=${CORPUS_DIR:-}
exp_dir=""
data_dir=""
config=""
extra_train=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --corpus-dir) corpus_dir=$2; shift 2 ;;
    --exp-dir) exp_dir=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --set) extra_train+=("$2"); shift 2 ;;
    -h|--help) echo "usage: run.sh [--stage N] [--stop-stage N] [--corpus-dir DIR] [--exp-dir DIR] [--data-dir DIR] [--config YAML] [--set KEY=VALUE]..."; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -x "$repo/.venv/bin/asr" ]; then asr="$repo/.venv/bin/asr" python="$repo/.venv/bin/python"; else asr=asr python=python3; fi
command -v "$asr" >/dev/null || { echo "run.sh: the asr command is missing: run 'bash setup.sh' first" >&2; exit 1; }
# The read-only copy in ../shared/data is used in place when present; otherwise `asr prep` downloads.
# A corpus that is made rather than read (synth) sets shared_name="": it gets neither.
if [ -n "$shared_name" ] && [ -z "$corpus_dir" ] && [ -e "$repo/../shared/data/$shared_name" ]; then
  corpus_dir="$repo/../shared/data/$shared_name"
fi
exp_dir=${exp_dir:-$repo/exp/$corpus}
data_dir=${data_dir:-$exp_dir/data}
config=${config:-$(dirname "$0")/conf/train.yaml}
run_stage() { [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ]; }
prep_source() {
  if [ -n "$corpus_dir" ]; then echo --corpus-dir "$corpus_dir"
  elif [ -n "$shared_name" ]; then echo --download-dir "$exp_dir/downloads"; fi
}
