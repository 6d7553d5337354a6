"""Kill and resume: `asr train` SIGKILLed at random moments, then continued with --resume, must end
with the same weights as a run that was never interrupted (same seed, CPU), and a kill must never
leave a corrupt checkpoint, vocabulary or metrics file behind.

    python bench/kill_resume.py [--kills 10] [--seed 0] [--epochs 6] [--work /tmp/kill_resume]

A tiny model on 24 real FSDD recordings (valid: 6), threads=1, trained once straight through; then
--kills times: started afresh and SIGKILLed after a random (seeded) delay, drawn uniformly over the
straight run's training time (counted from when tokens.txt appears, after imports and data loading)
or, every other time, within 50 ms of a random epoch's checkpoint appearing (while last.pt is written
and old epochs pruned, or model.pt written); its files checked (every .pt loads, metrics.jsonl
parses, tokens.txt matches); resumed with --resume (SIGKILLed again, up to --max-kills-per-run
times, while --rekill says so); and its model.pt and checkpoints/last.pt (model weights, optimiser
state, RNG states) compared tensor for tensor with the straight run's. Prints a markdown table."""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from asr.audio import audio_duration  # noqa: E402
from asr.segments import Segment, write_manifest  # noqa: E402
from data_prep.fsdd import DIGITS  # noqa: E402

DATA = os.environ.get("ASR_SHARED_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))


def manifests(folder: str) -> List[str]:
    """The 24 + 6 recordings of tests/test_train.py's fsdd_manifests fixture."""
    rec = os.path.join(DATA, "fsdd", "recordings")

    def utts(takes):
        return [Segment(id=f"{d}_{s}_{t}", path=os.path.join(rec, f"{d}_{s}_{t}.wav"),
                        duration=audio_duration(os.path.join(rec, f"{d}_{s}_{t}.wav")), text=DIGITS[d], speaker=s)
                for d in range(0, 10, 3) for s in ("george", "lucas") for t in takes]

    paths = [os.path.join(folder, "train.jsonl"), os.path.join(folder, "valid.jsonl")]
    write_manifest(paths[0], utts([10, 11, 12]))
    write_manifest(paths[1], utts([5]))
    return paths


def config(folder: str, epochs: int) -> str:
    import yaml
    cfg = dict(preset="tiny", epochs=epochs, max_batch_seconds=4.0, num_workers=0, warmup_steps=5, keep_best=2,
               average_best=2, threads=1, model=dict(dropout=0.0, specaugment=dict(freq_masks=1, time_masks=1)))
    path = os.path.join(folder, "train.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path


def command(cfg: str, data: List[str], exp: str, resume: bool) -> List[str]:
    return [sys.executable, "-m", "asr_cli", "train", "--config", cfg, "--train", data[0], "--valid", data[1],
            "--exp-dir", exp, "--device", "cpu"] + ["--resume"] * resume


def run(cmd: List[str], kill_after: Optional[float] = None, marker: Optional[str] = None) -> Dict:
    """Runs `cmd` (its output kept in memory); SIGKILLs it `kill_after` seconds after `marker` (a file
    the run writes) appears, or after its start without a marker. `started`: when the marker appeared."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while marker and not os.path.exists(marker) and proc.poll() is None:
        time.sleep(0.005)
    started = time.perf_counter() - start
    killed = False
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        killed = True
    stderr = proc.communicate()[1].decode(errors="replace")
    return dict(rc=proc.returncode, killed=killed, seconds=time.perf_counter() - start, started=started,
                stderr=stderr)


def check_files(exp: str, tokens: str) -> Dict:
    """What a kill left: the last checkpoint's epoch and step, and any file that does not read back."""
    problems = []
    folder = os.path.join(exp, "checkpoints")
    last = None
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        if name.startswith(".tmp-"):
            continue  # an unfinished write: never renamed into place, removed by the next run
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure to read is what we look for
            problems.append(f"{name}: {type(e).__name__}")
            continue
        if name == "last.pt":
            last = ckpt
    if os.path.exists(os.path.join(exp, "tokens.txt")) and open(os.path.join(exp, "tokens.txt")).read() != tokens:
        problems.append("tokens.txt differs")
    if os.path.exists(os.path.join(exp, "metrics.jsonl")):
        try:
            [json.loads(line) for line in open(os.path.join(exp, "metrics.jsonl")) if line.strip()]
        except ValueError:
            problems.append("metrics.jsonl unreadable")
    reached = "no checkpoint" if last is None else f"{last['training']['epoch']}/{last['training']['step']}"
    temp = [n for n in os.listdir(folder) if n.startswith(".tmp-")] if os.path.isdir(folder) else []
    return dict(reached=reached, problems=problems, temp=temp)


def tensors(obj, prefix: str = "") -> Dict[str, torch.Tensor]:
    """Every tensor inside a (nested) checkpoint, by its path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    out = {}
    for k, v in items:
        out.update(tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def compare(a_path: str, b_path: str, keys=("state_dict",)) -> float:
    """The largest absolute difference over the tensors under `keys` (inf if the sets differ)."""
    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (a_path, b_path))
    ta = tensors({k: a[k] for k in keys if k in a})
    tb = tensors({k: b[k] for k in keys if k in b})
    if ta.keys() != tb.keys() or any(ta[k].shape != tb[k].shape for k in ta):
        return float("inf")
    diffs = [(ta[k].double() - tb[k].double()).abs().max().item() if ta[k].numel() else 0.0 for k in ta
             if ta[k].is_floating_point() or not torch.equal(ta[k], tb[k])]
    return max(diffs or [0.0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rekill", type=float, default=0.3, help="chance that a resumed run is killed again")
    parser.add_argument("--max-kills-per-run", type=int, default=3)
    parser.add_argument("--work", default="/tmp/kill_resume")
    parser.add_argument("--at-checkpoint", type=int, default=1,
                        help="1: every other kill lands within 50 ms of a random epoch's checkpoint appearing")
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    data = manifests(args.work)
    cfg = config(args.work, args.epochs)
    straight_dir = os.path.join(args.work, "straight")
    straight = run(command(cfg, data, straight_dir, resume=False), marker=os.path.join(straight_dir, "tokens.txt"))
    if straight["rc"] != 0:
        print(straight["stderr"][-3000:], file=sys.stderr)
        return 1
    tokens = open(os.path.join(straight_dir, "tokens.txt")).read()
    training = straight["seconds"] - straight["started"]  # from the vocabulary's writing (data loaded) to the end
    print(f"straight run: {straight['seconds']:.1f} s, of which {training:.1f} s after start-up, {args.epochs} epochs "
          f"(torch {torch.__version__}, {os.cpu_count()} CPUs)\n")
    rng = random.Random(args.seed)
    print("| run | killed at (s after start-up, or after epochN.pt appeared) | epoch/step in last.pt after kill | kills | files after kill | resumed ok "
          "| max abs diff model.pt | max abs diff last.pt (weights + optimiser) | bit-identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for i in range(args.kills):
        exp = os.path.join(args.work, f"run{i}")
        if i % 2 and args.at_checkpoint:  # within 50 ms of a random epoch's checkpoint appearing: while last.pt
            epoch = rng.randint(1, args.epochs)  # is written, old epochs pruned, or (last epoch) model.pt written
            at, when = rng.uniform(0.0, 0.05), f"epoch{epoch}.pt + "
            marker = os.path.join(exp, "checkpoints", f"epoch{epoch}.pt")
        else:
            at, when, marker = rng.uniform(0.0, training), "", os.path.join(exp, "tokens.txt")
        result = run(command(cfg, data, exp, resume=False), kill_after=at, marker=marker)
        after = check_files(exp, tokens)
        kills, problems = int(result["killed"]), list(after["problems"])
        while True:
            again = kills < args.max_kills_per_run and rng.random() < args.rekill
            result = run(command(cfg, data, exp, resume=True),
                         kill_after=straight["started"] + rng.uniform(0.0, training) if again else None)
            if not result["killed"]:
                break
            kills += 1
            problems += check_files(exp, tokens)["problems"]
        ok = result["rc"] == 0 and os.path.exists(os.path.join(exp, "model.pt"))
        if ok:
            model_diff = compare(os.path.join(straight_dir, "model.pt"), os.path.join(exp, "model.pt"))
            last_diff = compare(os.path.join(straight_dir, "checkpoints", "last.pt"),
                                os.path.join(exp, "checkpoints", "last.pt"), keys=("state_dict", "training"))
        else:
            model_diff = last_diff = float("nan")
            problems.append(f"resume rc {result['rc']}: {result['stderr'].strip().splitlines()[-1:]}")
        identical = ok and model_diff == 0 and last_diff == 0 and not problems
        failures += not identical
        files = "ok" + (f" ({len(after['temp'])} unfinished .tmp)" if after["temp"] else "") if not problems \
            else "; ".join(problems)
        print(f"| {i} | {when}{at:.3f}{'' if kills else ' (finished first)'} | {after['reached']} | {kills} | {files} "
              f"| {'yes' if ok else 'no'} | {model_diff:.3g} | {last_diff:.3g} | {'yes' if identical else 'no'} |",
              flush=True)
        leftovers = [n for n in os.listdir(os.path.join(exp, "checkpoints")) if n.startswith(".tmp-")]
        if leftovers:
            print(f"  run {i}: left {leftovers} after finishing", flush=True)
    print(f"\n{args.kills - failures}/{args.kills} killed runs resumed to bit-identical weights")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
