#!/usr/bin/env bash
# The golden files are what they claim to be: every file listed in the
# manifests exists with its recorded size and SHA-256, and no .h5 file in
# tests/data is missing from a manifest.
set -u
DATA=${PROXYGML_TESTDATA:?}
/usr/bin/python3 - "$DATA" <<'PYEOF'
import hashlib, json, os, sys
root, bad, seen = sys.argv[1], 0, set()
for sub in ("", "baselines"):
    d = os.path.join(root, sub)
    for e in json.load(open(os.path.join(d, "manifest.json"))):
        p = os.path.join(d, e["file"])
        seen.add(os.path.normpath(p))
        if not os.path.exists(p):
            print("FAIL %s is missing" % p); bad += 1; continue
        h = hashlib.sha256(open(p, "rb").read()).hexdigest()
        ok = h == e["sha256"] and os.path.getsize(p) == e["bytes"]
        print("%s %s" % ("ok  " if ok else "FAIL", os.path.join(sub, e["file"])))
        bad += not ok
for dp, _, files in os.walk(root):
    for f in files:
        p = os.path.normpath(os.path.join(dp, f))
        if f.endswith(".h5") and p not in seen:
            print("FAIL %s is in no manifest" % p); bad += 1
print("%d files checked, %d bad" % (len(seen), bad))
sys.exit(1 if bad or not seen else 0)
PYEOF
