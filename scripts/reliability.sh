#!/usr/bin/env bash
# Runs the reliability tests alone and prints their figures (fuzz calls, crashes, kills
# survived, checkpoints lost).  They also run in the whole test command (scripts/test.sh).
#
#   bash scripts/reliability.sh            # after scripts/setup.sh (uses .venv)
#   OUT=dir bash scripts/reliability.sh    # where the JSON reports go (default out/reliability)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/reliability}
mkdir -p "$OUT"
rm -f "$OUT/fuzz_invalid.json" "$OUT/kill_resume.json"
export HANET_FUZZ_REPORT="$PWD/$OUT/fuzz_invalid.json" HANET_RELIABILITY_REPORT="$PWD/$OUT/kill_resume.json"
start=$SECONDS
.venv/bin/pytest -p no:cacheprovider -q --rootdir=. -c pyproject.toml \
  tests/test_fuzz_ops.py tests/test_fuzz_invalid.py tests/test_index_bounds.py \
  tests/test_kill_resume.py tests/test_train_faults.py tests/test_hostile_files.py | tee "$OUT/pytest.log" | tail -5
echo "reliability tests: $((SECONDS - start)) s"
.venv/bin/python - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
fuzz = json.loads((out / "fuzz_invalid.json").read_text())
kills = json.loads((out / "kill_resume.json").read_text())
print(f"invalid-call fuzz: {fuzz.get('calls')} calls, crashes {fuzz.get('crashes')}, hangs {fuzz.get('hangs')}, "
      f"failures {len(fuzz.get('failures', []))}, exceptions {fuzz.get('exceptions_by_type')}")
for name, f in kills.items():
    print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in f.items()))
EOF
