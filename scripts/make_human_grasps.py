#!/usr/bin/env python3
"""Write the human grasp library (config/grasps/<object>.yaml) of every shipped object, or of those named.

Example: ``.venv/bin/python scripts/make_human_grasps.py can bottle`` (deterministic; ~1-10 s per object).
"""

from __future__ import annotations

import sys

import yaml

from dexstack.grasp.human_grasps import GRASPS_FOLDER, KINDS, grasp_to_dict, synthesize_grasp
from dexstack.paths import data_path
from dexstack.perception.objects import known_objects, load_object_model


def main(argv: list[str]) -> int:
    folder = data_path(*GRASPS_FOLDER.split("/"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in argv or known_objects():
        model = load_object_model(name)
        grasps = [g for g in (synthesize_grasp(model, k) for k in KINDS) if g is not None]
        header = (f"# Synthetic human grasps of '{name}' (object frame), written by scripts/make_human_grasps.py:\n"
                  "# wrist pose T_object_H (xyz + quaternion xyzw), the rendered hand's 20 joints (human_hand.JOINTS)\n"
                  "# and the fingers that touch. See dexstack/grasp/human_grasps.py.\n")
        body = yaml.safe_dump({"object": name, "grasps": [grasp_to_dict(g) for g in grasps]},
                              default_flow_style=None, sort_keys=False, width=200)
        (folder / f"{name}.yaml").write_text(header + body)
        print(name, [(g.kind, g.contact_fingers) for g in grasps])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
