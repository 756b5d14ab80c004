"""``python -m alexnet_study.inspect RUN_DIR [IMAGE ...]``: redraw a run's analysis views from its
best checkpoint, and explain images of your own (prediction, top-5, Grad-CAM).

Writes into RUN_DIR/analysis/ (or --out): filters_conv1.png, activations.png, gradcam.png,
mistakes.png, confusion_matrix.png, and explained.png for the IMAGEs. Run it from the directory the
run was started in when its data.root is relative. Exit status: 0 done; 2 a mistake the one error
line explains (no run dir or checkpoint, an unreadable image, a model without conv layers).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet_study.errors import StudyError

if TYPE_CHECKING:
    from alexnet_study.analysis.views import ViewSettings

EXIT_USER_ERROR = 2
EXPLAINED_FILE = "explained.png"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m alexnet_study.inspect", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run's output dir (outputs/<task>/runs/<time>, or a sweep job)")
    parser.add_argument("images", nargs="*", type=Path, help="image files to classify and explain")
    parser.add_argument("--out", type=Path, help="where to write the PNGs (default: RUN_DIR/analysis)")
    parser.add_argument("--preset", default="default", help="conf/analysis preset for the views' sizes (default, full)")
    parser.add_argument("--max-images", type=int, default=2000,
                        help="test images evaluated for the mistakes (a seeded random subset; default 2000)")  # fmt: skip
    parser.add_argument("--top", type=int, default=5, help="classes listed per image (default 5)")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-views", action="store_true", help="only explain the images; leave the run's views")
    return parser.parse_args(argv)


def settings_from(preset_name: str, max_images: int) -> ViewSettings:
    """The view sizes of ``conf/analysis/<preset_name>.yaml``, with ``max_images``."""
    from alexnet_study.analysis.views import ViewSettings
    from alexnet_study.config.presets import preset

    node = preset("analysis", preset_name)
    known = {f.name for f in dataclasses.fields(ViewSettings)}
    return ViewSettings(**{k: v for k, v in node.items() if k in known}, max_images=max_images)


def inspect(args: argparse.Namespace) -> None:
    """Everything the command does; a :class:`StudyError` for what the user can fix."""
    from alexnet_study.analysis import conv_layers, describe, explain, explain_figure, load_trained, write_views
    from alexnet_study.report import plots

    settings = settings_from(args.preset, args.max_images)
    out = args.out or args.run_dir / "analysis"
    trained = load_trained(args.run_dir, args.device, load_data=not args.no_views)
    conv_layers(trained.net)  # a model without conv layers has none of these views: say so now
    if args.images:
        explanations = explain(trained, args.images)
        for explanation in explanations:
            print(describe(explanation, trained.classes, args.top))
        path = plots.save(explain_figure(explanations, trained.classes, args.top), out / EXPLAINED_FILE)
        print(f"wrote {path}")
    if not args.no_views:
        started = time.perf_counter()
        seconds = write_views(trained, out, settings)
        timing = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
        print(f"wrote {len(seconds)} views to {out} in {time.perf_counter() - started:.1f} s ({timing})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        inspect(args)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
