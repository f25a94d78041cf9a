#!/usr/bin/env python3
"""Regenerates fuzz/seeds/json/*.json from fuzz/seeds/yaml/*.yaml (needs PyYAML).

`!ignore` keys are dropped, as Envoy's YAML reader does. Run from fuzz/seeds/.
"""
import glob
import json
import os

import yaml


class Loader(yaml.SafeLoader):
    pass


Loader.add_constructor("!ignore", lambda loader, node: "__IGNORE__")


def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k != "__IGNORE__"}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


for f in sorted(glob.glob("yaml/*.yaml")):
    with open(f) as src:
        doc = strip(yaml.load(src, Loader=Loader))
    name = os.path.basename(f)[: -len(".yaml")]
    # A few compact ones, the rest indented: both shapes are worth mutating.
    compact = name.startswith(("03", "05", "18"))
    with open(f"json/{name}.json", "w") as out:
        if compact:
            json.dump(doc, out, separators=(",", ":"))
        else:
            json.dump(doc, out, indent=1)
        out.write("\n")
