"""The `kdrepro` command line: train runs, list runs, targets, models, losses, datasets or methods, render a target, show status, verify files.

It reads config/ and workflow/schemas/ of the repository it is installed from (kdrepro.paths) and writes
under the working directory's results/, as Snakemake does. Each command imports what it needs inside
itself, so that a command starts without loading what only the others use (start-up time): `list` and
`status` read a cached summary of the registry (kdrepro.summary), the cached catalogue of models and losses
(kdrepro.catalog) or the datasets' published facts (kdrepro.data.meta), and no command imports torch unless
it trains, searches, verifies checkpoints, benchmarks or renders FitNets' tables (which build networks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from kdrepro import kernels, pool
from kdrepro.errors import CheckpointError
from kdrepro.paths import DEFAULT_SETTING, LOCK, PREVIOUS_RESUME, RESUME

DEFAULT_CONFIG = [DEFAULT_SETTING]
PRECISIONS = ["fp32", "bf16"]
COMPILE_MODES = ["default", "reduce-overhead", "max-autotune"]


def _overrides(pairs: list[str]) -> dict:
    """KEY=VALUE pairs (dotted keys, YAML values), like snakemake --config."""
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"kdrepro: --config takes KEY=VALUE, got {pair!r}")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise SystemExit(f"kdrepro: --config {pair}: the value is not valid YAML ({getattr(err, 'problem', err)})") from None
    return out


def setting_flag(key: str, convert=str):
    """An argparse type for a flag that stands for the setting key `key`: its value must pass that key's
    schema (so --threads 0 or --device gpu0 are refused as the setting would refuse them)."""

    def parse(text: str):
        from kdrepro import config as settings

        try:
            value = convert(text)
            settings.check_key(key, value)
        except (ValueError, settings.ConfigError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value

    return parse


def setting_from(args) -> dict:
    """The setting of the flags; its image folders' roots and its external teachers' files go into the environment
    (kdrepro.data.folders.ROOTS_ENV, kdrepro.teachers.TEACHERS_ENV), where this process's loads, and those of a warm
    trainer's child it hands a run to, find them."""
    from kdrepro import config as settings
    from kdrepro.data.folders import export_roots
    from kdrepro.teachers import export_paths

    config = settings.load(args.configfile or DEFAULT_CONFIG, _overrides(args.config))
    export_roots(config)
    export_paths(config)
    return config


def registry_from(args, config: dict | None = None):
    from kdrepro.assemble import build_registry

    return build_registry(config or setting_from(args))


def summary_from(args, config: dict | None = None):
    """The runs, targets and methods that list and status show: cached by the setting's content and the code
    version (kdrepro.summary), the registry built only on a miss."""
    from kdrepro import summary

    config = config or setting_from(args)
    return summary.cached(config) or summary.store(config, registry_from(args, config))


def pin_kernels(args, config: dict | None) -> None:
    """The CPU instruction set of the flag, else the setting's; before the first tensor operation (building
    a registry initialises networks), since each library reads it once."""
    try:
        kernels.pin(args.cpu_isa or (config or {}).get("cpu_isa"))
    except ValueError as err:
        raise SystemExit(f"kdrepro: {err}") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"kdrepro: device {device} requested but CUDA is not available")
    return device


def train_options(args, config: dict | None, setting: str) -> dict:
    """train_run's device, precision and compile mode: the flags given, else the setting's (with
    --spec-json there is none: cpu, fp32, no compile). Compiled graphs are cached under the
    setting's results, so every later process (run, search trial) of the setting reuses them."""
    config = config or {"device": "cpu", "precision": "fp32", "compile": False}
    compile_mode = args.compile or config["compile"] or None
    if compile_mode:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path("results", setting, "compile-cache").resolve()))
    return {"device": resolve_device(args.device or config["device"]), "precision": args.precision or config["precision"],
            "compile_mode": compile_mode}


def spec_from_flag(value: str):
    """--spec-json's run spec: the JSON itself or, where the value names an existing file, the JSON in that file.
    A node that names an external file by its path (weights_file) alone is given the file's sha256. Every error
    is one line, and names the file where there is one."""
    from kdrepro.graph import RunSpec, SpecError
    from kdrepro.teachers import with_file_hashes

    if not os.path.exists(value):  # os.path: a spec's JSON, too long to be a file name, is then no file rather than an error
        try:
            return RunSpec.from_dict(with_file_hashes(json.loads(value)))
        except json.JSONDecodeError as err:
            # a spec's JSON is an object: anything else was meant as a file name
            what = "" if value.lstrip().startswith("{") else f", nor an existing file ({os.path.abspath(value)})"
            raise SystemExit(f"kdrepro: --spec-json is not valid JSON ({err}){what}") from None
    try:
        return RunSpec.from_dict(with_file_hashes(json.loads(Path(value).read_text())))
    except json.JSONDecodeError as err:
        raise SystemExit(f"kdrepro: --spec-json file {value} is not valid JSON: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"kdrepro: --spec-json file {value} cannot be read: {err}") from None
    except SpecError as err:
        raise SystemExit(f"kdrepro: --spec-json file {value}: {err}") from None


def check_order(runs: list[str], registry) -> None:
    """`train` trains its runs in the order given: each run's dependencies must be trained already or named
    before it. One line names every run to train (or name) first."""
    problems = []
    for i, run in enumerate(runs):
        for dep in registry.runs[run].dependencies:
            if dep in runs[:i] or (registry.run_dir(dep) / "checkpoint.pt").exists():
                continue
            where = "named after it" if dep in runs[i + 1:] else "not trained yet"
            problems.append(f"run {run} needs {dep}, {where}: name {dep} before {run}")
    if problems:
        raise SystemExit(f"kdrepro: {'; '.join(problems)} (or use snakemake, which trains every run a target needs)")


def cmd_train(args) -> None:
    config = None if args.spec_json else setting_from(args)
    pin_kernels(args, config)
    if args.server and (status := pool.hand_over([a for a in args.argv if a != "--server"])) is not None:
        raise SystemExit(status)
    import torch

    from kdrepro.engine import evaluate_run, train_run

    if args.spec_json:
        from kdrepro import config as settings

        settings.import_plugins(args.plugin)
        specs, setting = [spec_from_flag(args.spec_json)], args.setting
    else:
        registry = registry_from(args, config)
        for run in args.run:
            if run not in registry.runs:
                close = [r for r in registry.runs if run in r][:10]
                raise SystemExit(f"kdrepro: no run named {run!r}" + (f"; did you mean: {', '.join(close)}" if close else ""))
        check_order(args.run, registry)
        specs, setting = [registry.runs[r] for r in args.run], registry.setting
    torch.set_num_threads(args.threads)
    runs_root = Path("results") / setting / "runs"
    options = train_options(args, config, setting) | {"setting": setting, "progress": False if args.no_progress else None}
    if args.stack:
        from kdrepro.engine.stack import train_stacked

        if options.pop("compile_mode"):
            raise SystemExit("kdrepro: --stack does not compile (torch.compile of a vmapped step is not supported here)")
        if any(spec.evaluation for spec in specs):
            raise SystemExit("kdrepro: --stack trains runs; a run whose nodes are all frozen (an evaluation) is run alone")
        results = train_stacked(specs, [runs_root / s.name for s in specs], runs_root, **options)
    else:  # a run whose nodes are all frozen (an external teacher's) is measured, not trained
        results = [evaluate_run(spec, runs_root / spec.name, runs_root, device=options["device"], setting=setting)
                   if spec.evaluation else train_run(spec, runs_root / spec.name, runs_root, **options) for spec in specs]
    for metrics in results:
        print(json.dumps({k: metrics[k] for k in ("run", "final_test_acc", "best_test_acc", "wall_seconds")}))


def cmd_search(args) -> None:
    """One worker of a search a paper registered (kdrepro.search), or the export of its best graph."""
    config = setting_from(args)
    pin_kernels(args, config)
    import torch

    from kdrepro.search import export, run_worker

    registry = registry_from(args, config)
    searches = registry.searches
    if args.list:
        for name, search in searches.items():
            study = search.study
            print(f"{name}: {study.space.describe()}, T={study.trials}, D={study.workers}, objective {study.objective}, {study.directory}")
        return
    if args.study not in searches:
        raise SystemExit(f"kdrepro: no search named {args.study!r}; known: {', '.join(searches) or 'none'}")
    search = searches[args.study]
    if args.export:
        best = export(search.study)
        print(json.dumps({k: best[k] for k in ("study", "best_trial", "best_value", search.study.space.key, "trials")}))
        return
    missing = [d for d in search.pretrained() if not (registry.run_dir(d) / "checkpoint.pt").exists()]
    if missing:
        raise SystemExit(f"kdrepro: search {args.study} needs these pre-trained runs first: {', '.join(missing)} (or use snakemake)")
    torch.set_num_threads(args.threads)
    counts = run_worker(search.study, args.worker, registry.results_dir / "runs", **train_options(args, registry.config, registry.setting))
    print(json.dumps({"study": args.study, "worker": args.worker, "trials": counts}))


def cmd_bench(args) -> None:
    from kdrepro.bench import main as bench

    bench(args)


def list_runs(args, config: dict) -> None:
    for name, run in summary_from(args, config).runs.items():
        deps = f"  <- {', '.join(run['dependencies'])}" if run["dependencies"] else ""
        print(f"{name}{deps}")


def list_targets(args, config: dict) -> None:
    for paper, names in summary_from(args, config).papers.items():
        print(f"{paper}: {' '.join(names)}")


def list_models(args, config: dict) -> None:
    from kdrepro import catalog

    for name in catalog.list_models():
        facts = catalog.model_facts(name)
        print(f"{name:22s} family {facts.family:16s} depth {facts.depth:<4d} options: {', '.join(facts.options) or 'none'}")


def list_losses(args, config: dict) -> None:
    from kdrepro import catalog

    for kind in ("loss", "gate"):
        for name, facts in sorted(catalog.facts_of(kind).items()):
            # a gate scales an edge's loss: what it reads is that loss's business
            reads = f"reads {facts.inputs}{' (whole batch)' if facts.batch else ''}" if kind == "loss" else ""
            print(f"{kind} {name:18s} {reads:32s} options: {', '.join(facts.options) or 'none'}")


def list_datasets(args, config: dict) -> None:
    from kdrepro.data.folders import LEGACY, setting_folders
    from kdrepro.data.meta import PUBLISHED, dataset_meta, default_root, folder_meta

    def line(meta) -> str:
        return (f"{meta.num_classes:3d} classes, {meta.channels} channel(s), {meta.size}x{meta.size}, "
                f"{meta.train} train / {meta.test} test images")

    for name, meta in PUBLISHED.items():
        print(f"{name:14s} {line(meta)}")
    # the user's own images, where the setting (else the loader's default) says they are
    folders = setting_folders(config)
    if LEGACY not in folders:
        root = config["data"]["roots"].get(LEGACY) or default_root(LEGACY)
        meta = dataset_meta(LEGACY, root)
        print(f"{LEGACY:14s} " + (f"{line(meta)} (at {root})" if meta else
                                  f"your own images: none at {root}; set data.roots.{LEGACY} to a folder of "
                                  "train/ and test/, one folder per class in each"))
    for name, folder in folders.items():  # the setting's image_folders (and image_folder where it trains on it)
        meta = folder_meta(folder.root, name, folder.channels) if folder.problem is None else None
        print(f"{name:14s} " + (f"{line(meta)} (at {folder.root})" if meta else
                                f"your own images: {folder.problem}; set {folder.key}"))


def list_methods(args, config: dict) -> None:
    for name, description in summary_from(args, config).methods.items():
        print(f"{name:12s} {description}")


LISTINGS = {"runs": list_runs, "targets": list_targets, "models": list_models, "losses": list_losses,
            "datasets": list_datasets, "methods": list_methods}


def cmd_list(args) -> None:
    # the setting first, for every listing: its plugins register their models and losses, it names the image folder
    LISTINGS[args.what](args, setting_from(args))


def cmd_render(args) -> None:
    registry = registry_from(args)
    names = args.target or list(registry.targets)
    unknown = [n for n in names if n not in registry.targets]
    if unknown:
        raise SystemExit(f"kdrepro: unknown target {unknown[0]!r}; known: {', '.join(registry.targets)}")
    for name in names:
        registry.targets[name].render()
        print("\n".join(registry.targets[name].outputs))


def resume_progress(run_dir: Path, epochs: int) -> str | None:
    """What `kdrepro status` says of a run that left resume state (None: it left none)."""
    present = [name for name in (RESUME, PREVIOUS_RESUME) if (run_dir / name).exists()]
    if not present:  # most runs: no checkpoint to read, no engine to load
        return None
    from kdrepro.engine.checkpoint import load_checkpoint

    damaged = []
    for name in present:
        try:
            epoch = load_checkpoint(run_dir / name)["state"]["epoch"]
        except CheckpointError:
            damaged.append(name)
            continue
        note = f"; its damaged {damaged[0]} is set aside then" if damaged else ""
        return f"partial   {epoch}/{epochs} epochs (resumes on the next run{note})"
    if damaged:
        return f"partial   {' and '.join(damaged)} damaged (the next run sets them aside and starts again)"
    return None


def run_state(run_dir: Path, run: dict) -> tuple[str, str]:
    """What `kdrepro status` says of a run of the summary (kdrepro.summary): its count and its line."""
    if (run_dir / "metrics.json").exists():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if metrics["config_hash"] != run["config_hash"]:  # what train's finished_metrics (kdrepro.engine.train) refuses
            return "stale", (f"stale     finished as another configuration ({metrics['config_hash']}, this setting's is "
                             f"{run['config_hash']}): `kdrepro train` refuses to overwrite it; remove {run_dir} "
                             "or give the setting another name")
        return "done", f"done      best {metrics['best_test_acc']:.2f}  final {metrics['final_test_acc']:.2f}  {metrics['wall_seconds']:.0f}s"
    partial = resume_progress(run_dir, run["epochs"])
    return ("todo", "todo") if partial is None else ("partial", partial)


def cmd_status(args) -> None:
    registry = summary_from(args)
    counts = dict.fromkeys(("done", "stale", "partial", "todo"), 0)
    for name, run in registry.runs.items():
        if args.pattern and args.pattern not in name:
            continue
        count, state = run_state(registry.run_dir(name), run)
        counts[count] += 1
        print(f"{name:60s} {state}")
    print(", ".join(f"{v} {k}" for k, v in counts.items()))


def cmd_verify(args) -> None:
    """Every file of a setting: checkpoints, snapshots and resume states by their content checksum,
    metrics.json by parsing it, the dataset files by their published checksums; then the snakemake
    command that retrains the damaged runs (a damaged resume state needs none: its run sets it aside).
    --set-aside first renames the damaged files, and those runs' checkpoint.pt and metrics.json, out of
    the way (kept for inspection; `snakemake --force` would delete them)."""
    from kdrepro import config as settings
    from kdrepro.data import DatasetError
    from kdrepro.data.folders import setting_folders
    from kdrepro.data.sources import load_dataset, load_folder
    from kdrepro.engine.checkpoint import load_checkpoint, set_aside
    from kdrepro.io import file_lock

    given = setting_from(args)
    setting = args.setting or given["setting"]
    results = Path("results") / setting
    if not results.is_dir():
        raise SystemExit(f"kdrepro: {results} does not exist: setting {setting} has no results to verify")
    if given["setting"] == setting:
        config, configfile = given, " ".join(args.configfile or [])
    else:  # the setting as the workflow wrote it down, if it did
        config = settings.load([results / "setting.json"]) if (results / "setting.json").exists() else None
        configfile = f"<the settings file of {setting}>"
    damaged: dict[Path, str] = {}
    files = sorted(p for folder in ("runs", "search") for p in (results / folder).rglob("*") if p.is_file())
    for path in files:
        try:
            if path.suffix == ".pt" and not path.name.endswith(".stale.pt"):
                load_checkpoint(path)
            elif path.name == "metrics.json":
                json.loads(path.read_text())
        except (CheckpointError, ValueError) as err:
            damaged[path] = str(err) if isinstance(err, CheckpointError) else f"{path} is not valid JSON ({err})"
    datasets = config["datasets"] if config else []
    folders = setting_folders(config) if config else {}
    for name in datasets:
        try:
            if name in folders:
                load_folder(name, folders[name].channels, root=folders[name].root, cache=False)
            else:
                load_dataset(name, config["data"]["roots"].get(name), download=False, cache=False)
        except DatasetError as err:
            damaged[Path(name)] = str(err)
    for problem in damaged.values():
        print(f"DAMAGED  {problem}")
    print(f"{len(files)} files of setting {setting} and {len(datasets)} dataset(s) checked: {len(damaged)} damaged"
          + ("" if datasets else f" (datasets not checked: give the configfile of setting {setting})"))
    folders = {p.parent for p in damaged if p.is_relative_to(results)}
    retrain = sorted(d for d in folders if d.is_relative_to(results / "runs")
                     and any(p.parent == d and p.name not in (RESUME, PREVIOUS_RESUME) for p in damaged))
    if args.set_aside:
        for folder in sorted(folders):
            with file_lock(folder / LOCK, waiting=f"{folder} is training; waiting for it to finish"):
                outputs = [folder / "checkpoint.pt", folder / "metrics.json"] if folder in retrain else []
                for path in sorted({*outputs, *(p for p in damaged if p.parent == folder)}):
                    if path.exists():
                        print(f"set aside {path} as {set_aside(path).name}")
    if retrain:
        print(f"retrain the damaged runs (snakemake later reruns the runs that load them, their inputs being newer):\n"
              f"  snakemake {' '.join(str(d / 'metrics.json') for d in retrain)} --force"
              + (f" --configfile {configfile}" if configfile else ""))
    if damaged:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kdrepro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--configfile", action="append", help="setting YAML/JSON (repeatable; default config/config.yaml)")
        p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="override a setting key (dotted)")
        return p

    train = with_config(sub.add_parser("train", help="train one run by name"))
    train.add_argument("run", nargs="*", help="run names (see `kdrepro list runs`), trained one after another: "
                       "a run's dependencies must be trained already or named before it")
    train.add_argument("--stack", action="store_true", help="train the runs (one graph, other seeds) as one stacked model")
    train.add_argument("--spec-json", metavar="JSON|FILE", help="the run spec itself (what the workflow passes), or a file holding it")
    train.add_argument("--setting", default="default", help="setting name, with --spec-json")
    train.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                       help="with --spec-json: import this module first (the setting's `plugins`, whose losses the spec names)")
    train.add_argument("--no-progress", action="store_true", help="one log line per epoch instead of a bar")
    train.add_argument("--server", action="store_true",
                       help="train in a child of this host's warm trainer (started if none runs; kdrepro.pool): "
                       "torch imported once per host, not once per run")
    train.set_defaults(func=cmd_train)

    lister = with_config(sub.add_parser("list", help="list runs, targets, models, losses, datasets or comparison methods"))
    lister.add_argument("what", choices=list(LISTINGS), help="runs and targets of the setting; the models, losses and "
                        "gates, datasets and comparison methods (config/experiments/compare.yaml, compare.define) it may name")
    lister.set_defaults(func=cmd_list)

    render = with_config(sub.add_parser("render", help="render tables/figures/claims from finished runs"))
    render.add_argument("target", nargs="*", help="target names (default: all)")
    render.set_defaults(func=cmd_render)

    status = with_config(sub.add_parser("status", help="show which runs are done, stale (another configuration), partial or to do"))
    status.add_argument("pattern", nargs="?", help="only runs whose name contains this")
    status.set_defaults(func=cmd_status)

    search = with_config(sub.add_parser("search", help="run one worker of a search (KTG's graphs, TAKD's tau/lambda) on a shared Optuna study"))
    search.add_argument("study", nargs="?", help="search name (see --list)")
    search.add_argument("--worker", type=int, default=0, help="this worker's index, 0..D-1 (one process per index at a time)")
    search.add_argument("--export", action="store_true", help="write best.json and trials.csv of a finished search")
    search.add_argument("--list", action="store_true", help="list the searches of the setting")
    search.set_defaults(func=cmd_search)
    for p in (train, search):  # how a run computes (not what it is): the setting's unless given here
        p.add_argument("--device", type=setting_flag("device"), help="cpu, cuda, cuda:N or auto (default: the setting's)")
        p.add_argument("--threads", type=setting_flag("threads_per_job", int), default=1, help="CPU threads for torch")
        p.add_argument("--cpu-isa", choices=kernels.ISAS, help="pin the CPU kernels to this instruction set (default: the setting's)")
        p.add_argument("--precision", choices=PRECISIONS, help="bf16: train under bf16 autocast (default: the setting's)")
        p.add_argument("--compile", choices=COMPILE_MODES, help="torch.compile the networks; reduce-overhead adds CUDA "
                       "graphs (default: the setting's)")

    verify = with_config(sub.add_parser("verify", help="check every file of a setting: checkpoints, resume states, metrics, datasets"))
    verify.add_argument("setting", nargs="?", help="the setting whose results/<setting>/ to check (default: the configfile's)")
    verify.add_argument("--set-aside", action="store_true",
                        help="rename damaged files (and their runs' checkpoint and metrics) aside, for snakemake to retrain")
    verify.set_defaults(func=cmd_verify)

    bench = sub.add_parser("bench", help="time our KD epoch against the official codebases' loop")
    bench.add_argument("--preset", choices=["gpu", "cpu"], default="cpu",
                       help="gpu: resnet56->resnet20, CIFAR-100-shaped, crop+flip, bf16; cpu: plane10->plane2, Fashion-MNIST")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--images", type=int, default=10000, help="images per timed epoch")
    bench.add_argument("--batch-size", type=int, default=128)
    bench.add_argument("--repeats", type=int, default=3, help="timed epochs per loop, after one warm-up")
    bench.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop")
    bench.add_argument("--compile", choices=COMPILE_MODES, help="torch.compile our models (reduce-overhead: CUDA graphs)")
    bench.add_argument("--precision", choices=PRECISIONS, help="our path's precision (default: the preset's; --accuracy: bf16)")
    bench.add_argument("--accuracy", action="store_true",
                       help="instead of timing: test accuracy over seeds of the official loop, ours in fp32 and ours fast")
    bench.add_argument("--stack", type=int, metavar="R",
                       help="instead: R KD students trained one by one, then stacked into one model (torch.func)")
    bench.add_argument("--epochs", type=int, default=5, help="--accuracy: epochs per run")
    bench.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--accuracy: student seeds")
    bench.add_argument("--test-images", type=int, help="--accuracy, --stack: evaluate on this many test images (default: all)")
    bench.add_argument("--dataset", help="--accuracy: real images for the preset's networks (default: the preset's)")
    bench.add_argument("--json", help="also write the report here")
    bench.set_defaults(func=cmd_bench)

    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command == "train" and bool(args.run) == bool(args.spec_json):
        parser.error("train needs run names or --spec-json")
    if args.command == "search" and not (args.study or args.list):
        parser.error("search needs a search name or --list")
    from kdrepro.catalog import ModelError
    from kdrepro.config import ConfigError
    from kdrepro.data import DatasetError
    from kdrepro.errors import TrainingError
    from kdrepro.graph import SpecError
    from kdrepro.io import WriteError
    from kdrepro.search_space import SearchError

    try:
        args.func(args)
    except (ConfigError, SpecError, ModelError, DatasetError, CheckpointError, TrainingError, WriteError, SearchError,
            FileNotFoundError) as err:
        raise SystemExit(f"kdrepro: {err}") from None
    except BrokenPipeError:  # `kdrepro list runs | head`
        sys.stdout = None


if __name__ == "__main__":
    main(sys.argv[1:])
