"""Pseudo-labels on real faces: a study on FER2013 at 10 % labels, every fit the same steps.

Runs ``fer-train -m experiment=study`` on a class-folder face set (FER2013's
``{train,test}/<emotion>/*.jpg``, fetched by hand into a temp folder: never committed,
never in tests) with one fixed protocol, then prints ``fer-report``'s group table and the
per-emotion changes against the supervised baseline of the same seed:

- 10 % of each emotion's training faces labeled, 10 % of train carved for validation,
  the rest of train (about 23k faces) the unlabeled pool, its labels hidden (audit only);
- the faces' native 48 px, decoded once into memory (``data.cache=memory``), CPU;
- every fit (baseline, each strategy's student, the all-labels ceiling) runs the same
  number of optimizer steps (``--steps``, default 400), so a student's gain is not a
  longer schedule (Oliver et al. 2018); the report states each run's steps.

The sweep directory (``--out``) is kept: run ``--quick`` (seed 1) to screen, then the full
run adds seeds 2 and 3 and reuses every finished job. Strategies are chosen on validation
(``fer-report``'s "best configuration by validation"), never on test.

    .venv/bin/python benchmarks/real_faces.py --data /tmp/fer2013 --out /tmp/rf [--quick]
    .venv/bin/python benchmarks/real_faces.py --demo --out /tmp/rf-demo [--quick]

``--roles`` picks the study's roles (default: all shipped ones); ``--config-dir`` adds a
directory with more roles (``study/<name>.yaml``), as ``fer-train --config-dir`` does.
Trailing arguments are fer-train overrides.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, TINY, real_face_overrides

ROLES = "baseline,balanced,crest_offline,topk,class_threshold,threshold,ceiling"


def study_command(args: argparse.Namespace, sweep: Path) -> list[str]:
    seeds = "1" if args.quick or args.tiny else args.seeds
    command = [sys.executable, "-m", "fer_lightning.cli.train", "-m"]
    if args.config_dir:
        command += ["--config-dir", str(Path(args.config_dir).resolve())]
    data = [] if args.demo else real_face_overrides(args.data)  # the demo: the default data
    if args.tiny:
        data += [*TINY, "data.image_size=32", f"paths.data_dir={args.out / 'data'}"]
    return [
        *command,
        "experiment=study",
        *data,
        "trainer=cpu",
        "trainer.max_epochs=-1",
        f"trainer.max_steps={args.steps}",
        "trainer.enable_progress_bar=false",
        f"paths.log_dir={args.out}",
        f"hydra.sweep.dir={sweep}",
        f"hydra.sweeper.params.seed='{seeds}'",
        f"hydra.sweeper.params.study='{args.roles}'",
        *args.overrides,
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="the face set's root: <root>/{train,test}/<emotion>/*")
    p.add_argument("--demo", action="store_true", help="the synthetic demo data instead")
    p.add_argument("--out", help="where the sweep and its report are kept")
    p.add_argument("--quick", action="store_true", help="seed 1 only (screening)")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps of every fit")
    p.add_argument("--roles", default=ROLES, help="the study's roles, comma separated")
    p.add_argument("--config-dir", help="a directory with more study roles")
    p.add_argument("--tiny", action="store_true", help="smoke test: tiny demo data, 2 steps")
    p.add_argument("overrides", nargs="*", help="fer-train overrides")
    args = p.parse_args(argv)
    if args.tiny:
        args.demo, args.steps, args.roles = True, 2, "baseline,balanced"
        args.out = args.out or tempfile.mkdtemp(prefix="fer-real-faces-")
    if bool(args.data) == args.demo:
        print("real_faces: pass --data <FER2013 class folders> (fetched by hand) or --demo")
        return
    if not args.out:
        p.error("--out DIR is needed: the sweep is kept there, so a later run reuses its jobs")
    out = Path(args.out).resolve()
    args.out = out
    sweep = out / "sweep"
    start = time.perf_counter()
    subprocess.run(study_command(args, sweep), check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    report = [sys.executable, "-m", "fer_lightning.cli.report", str(sweep), "--out", str(out)]
    text = subprocess.run(report, check=True, cwd=REPO, capture_output=True, text=True).stdout
    where = "the synthetic demo" if args.demo else args.data
    print(f"study on {where}: {args.steps} optimizer steps per fit, {seconds:.0f} s wall\n")
    print(text)


if __name__ == "__main__":
    main()
