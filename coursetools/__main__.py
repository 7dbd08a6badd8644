"""The course's command line behind ./course: run, doctor, publish, badges, bundle, table."""

from __future__ import annotations

import argparse
from pathlib import Path

from coursetools.publish import RUNS


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    from coursetools.lesson import quiet_bitsandbytes_kernels_note

    quiet_bitsandbytes_kernels_note()  # publish and doctor import bitsandbytes in this process too
    parser = argparse.ArgumentParser(prog="./course")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="report this machine's GPU, SDPA backends, bitsandbytes, versions, hub")
    run = commands.add_parser("run", help="execute the lessons and print one results table")
    run.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    run.add_argument("--build", type=Path, default=Path("build"))
    run.add_argument("--pattern", default="[0-9]*.ipynb", help="which notebooks, as a glob")
    publish = commands.add_parser("publish", help="store a run's results and run times, regenerate README and guide")
    publish.add_argument("--build", type=Path, help="a run's build folder; omitted: only regenerate the tables")
    publish.add_argument("--as", dest="name", choices=list(RUNS), help="which stored run it becomes")
    publish.add_argument("--notebooks", action="store_true", help="also copy its executed notebooks over notebooks/")
    badges = commands.add_parser("badges", help="rewrite every notebook's Colab badge and set-up cell")
    badges.add_argument("--check", action="store_true", help="only report stale notebooks (exit 1 if any)")
    offline = commands.add_parser("bundle", help="download into a folder the wheels that install the course offline")
    offline.add_argument("folder", type=Path)
    offline.add_argument("--python-version", help="the target machine's Python, e.g. 3.12 (default: this one's)")
    offline.add_argument("--platform", action="append", default=[],
                         help="the target's platform tag, repeatable, e.g. manylinux_2_28_x86_64 (default: this one's)")
    offline.add_argument("--only", nargs="+", default=[], metavar="NAME",
                         help="only these requirements and their dependencies (a partial bundle, no models)")
    table = commands.add_parser("table", help="print the Markdown results table of a results folder")
    table.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "table":
        from coursetools.publish import results_markdown
        from coursetools.results import load_results

        print(results_markdown(load_results(args.folder)))
        return 0
    if args.command == "bundle":
        from coursetools.bundle import bundle

        wheels = bundle(args.folder, args.python_version, args.platform, args.only)
        megabytes = sum(wheel.stat().st_size for wheel in wheels) / 2**20
        print(f"{args.folder}: {len(wheels)} wheels, {megabytes:.0f} MiB, README.md; use: COURSE_WHEELS={args.folder}")
        return 0
    if args.command == "badges":
        from colab.badges import main as badges_main

        return badges_main(["--check"] if args.check else [])
    if args.command == "publish":
        from coursetools.publish import publish, write_documents

        if args.build is None:
            write_documents()
        elif args.name is None:
            parser.error(f"publish --build needs --as {'|'.join(RUNS)}")
        else:
            publish(args.build, args.name, args.notebooks)
        return 0
    if args.command == "doctor":
        from coursetools.environment import environment_report
        from coursetools.profiles import detect_profile_name

        report = environment_report()
        profile = detect_profile_name()
        print(report.as_text())
        print(f"{'profile':<20} {profile}")
        print(f"\nstamp: {report.stamp(profile)}")
        return 0 if report.bitsandbytes == "works" else 1
    from coursetools.runner import run_course

    print(run_course(args.notebooks, args.build, args.pattern))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
