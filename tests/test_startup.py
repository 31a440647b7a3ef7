"""Commands that only read (list, status, render of a table from finished runs, the Snakefile's parse) never
import torch: the registry is built from the facts of the models and losses (kdrepro.catalog), which are the
registries' own, cached by code version."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, setting

from kdrepro import catalog

SRC = REPO / "src"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One user cache for the module: the first test builds the catalogue in it (cold), the others read it."""
    return tmp_path_factory.mktemp("home")


def run_python(code: str, cwd, home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(SRC), "HOME": str(home)}, check=True)


def test_reading_commands_never_import_torch(tmp_path, home):
    """`kdrepro list` and `kdrepro status` build the default setting's registry, here from a cold cache (the
    catalogue is then built in a child process, not in this one); the second listing reads the summary the
    first one cached, and lists the same runs in the same order."""
    code = ("import sys; import kdrepro.assemble; from kdrepro.cli import main; main(['list', 'runs']); print('--');"
            " main(['list', 'runs']); main(['status']); print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = run_python(code, tmp_path, home).stdout.strip().splitlines()
    assert out[-1] == "[]" and out[-2].endswith("todo")
    first = out[:out.index("--")]
    second = out[out.index("--") + 1:-2 - len(first)]  # then one status line per run, the counts, the modules
    assert first == second and len(first) > 100
    assert len(list((home / ".cache/kdrepro/summaries").iterdir())) == 1


def listings(code: str, cwd, home) -> dict[str, list[str]]:
    """What `code` printed, by the sections it opened with lines "== name"; the last line, the torch modules
    it imported, as section "modules"."""
    out: dict[str, list[str]] = {}
    for line in run_python(code + "print('== modules'); print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))",
                           cwd, home).stdout.splitlines():
        if line.startswith("== "):
            section = out.setdefault(line[3:], [])
        else:
            section.append(line)
    return out


def test_list_shows_models_losses_datasets_and_methods_without_torch(tmp_path, home):
    """Each listing names what the catalogue, the datasets' published facts and compare.yaml hold; a method of
    the setting's compare.define is listed after compare.yaml's, and only where the setting builds the comparison."""
    own = "compare.define.mine={description: 'my own method', edges: [{source: labels, loss: ce}]}"
    code = ("import sys; from kdrepro.cli import main\n"
            "for what in ('models', 'losses', 'datasets', 'methods'): print('==', what); main(['list', what])\n"
            f"print('== own'); main(['list', 'methods', '--config', {own!r}])\n"
            f"print('== own without compare'); main(['list', 'methods', '--config', {own!r}, '--config', 'experiments=[takd]'])\n")
    out = listings(code, tmp_path, home)
    assert out["modules"] == ["[]"]
    models = {line.split()[0]: line.split() for line in out["models"]}
    assert models["resnet8"][1:5] == ["family", "resnet", "depth", "8"] and "width" in " ".join(models["plane10"])
    losses = {tuple(line.split()[:2]): line for line in out["losses"]}
    assert "reads logits" in losses["loss", "kd"] and "temperature" in losses["loss", "kd"]
    assert "(whole batch)" in losses["loss", "rkd"] and "start, end" in losses["gate", "linear_decay"]
    datasets = {line.split()[0]: line for line in out["datasets"]}
    assert "100 classes, 3 channel(s), 32x32, 50000 train / 10000 test images" in datasets["cifar100"]
    assert f"your own images: none at {home}/.cache/kdrepro/image_folder; set data.roots.image_folder" in datasets["image_folder"]
    methods = {line.split()[0]: line for line in out["methods"]}
    assert "decoupled KD" in methods["dkd"] and "tfkd_self" in methods and "mine" not in methods
    assert out["own"][:-1] == out["methods"] and out["own"][-1].split(None, 1) == ["mine", "my own method"]
    assert out["own without compare"] == out["methods"]


def test_list_datasets_counts_the_settings_image_folder(tmp_path, capsys):
    from PIL import Image

    from kdrepro.cli import main

    root = tmp_path / "images"
    for split, count in (("train", 3), ("test", 1)):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (12, 12)).save(root / split / label / f"{i}.png")
    main(["list", "datasets", "--config", f"data.roots.image_folder={root}"])
    main(["list", "datasets", "--config", f"data.roots.image_folder={tmp_path / 'none'}"])
    found, missing = [line for line in capsys.readouterr().out.splitlines() if line.startswith("image_folder")]
    assert found.split(None, 1)[1] == f"2 classes, 3 channel(s), 12x12, 6 train / 2 test images (at {root})"
    assert f"none at {tmp_path / 'none'}; set data.roots.image_folder to a folder of train/ and test/" in missing


def test_status_tells_a_run_of_another_configuration_from_a_done_one(tmp_path, home):
    """A finished run whose metrics.json records another config hash is what `train` refuses: status says so, and
    what to do, and counts it apart from the done runs."""
    from kdrepro.assemble import build_registry
    from kdrepro.engine.train import finished_metrics
    from kdrepro.errors import TrainingError

    runs = build_registry(setting("config")).runs
    done, stale = runs["takd/fashion_mnist/plane10/s0"], runs["takd/fashion_mnist/plane2/s0"]
    for spec, config_hash in ((done, done.config_hash), (stale, "0123456789abcdef")):
        run_dir = tmp_path / "results/default/runs" / spec.name
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({"config_hash": config_hash, "best_test_acc": 80.0,
                                                          "final_test_acc": 79.5, "wall_seconds": 12.0}))
    with pytest.raises(TrainingError, match="another configuration"):
        finished_metrics(stale, tmp_path / "results/default/runs" / stale.name)
    out = run_python("from kdrepro.cli import main; main(['status', 'takd/fashion_mnist/plane'])", tmp_path, home).stdout.splitlines()
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out[:-1]}
    assert lines[done.name].startswith("done      best 80.00  final 79.50")
    assert lines[stale.name] == (f"stale     finished as another configuration (0123456789abcdef, this setting's is {stale.config_hash}): "
                                 f"`kdrepro train` refuses to overwrite it; remove results/default/runs/{stale.name} "
                                 "or give the setting another name")
    assert out[-1] == f"1 done, 1 stale, 0 partial, {len(lines) - 2} todo"


def test_the_summary_is_used_only_for_its_setting_and_while_the_search_results_are_unchanged(tmp_path, monkeypatch):
    from kdrepro import summary
    from kdrepro.assemble import build_registry

    monkeypatch.chdir(tmp_path)
    config = setting("config")
    registry = build_registry(config)
    assert summary.cached(config, tmp_path) is None
    stored = summary.store(config, registry, tmp_path)
    assert summary.cached(config, tmp_path) == stored
    assert list(stored.runs) == list(registry.runs) and stored.papers == registry.papers()
    first = next(iter(registry.runs.values()))
    assert stored.runs[first.name]["epochs"] == first.epochs and stored.runs[first.name]["config_hash"] == first.config_hash
    assert list(stored.methods) == list(registry.experiments["compare"]["methods"])
    assert summary.cached(config | {"seeds": [7]}, tmp_path) is None
    search = next(iter(registry.searches.values())).study
    search.best_path.parent.mkdir(parents=True)
    search.best_path.write_text("{}")  # a search finished: its result adds runs
    assert summary.cached(config, tmp_path) is None


def test_the_catalogue_is_what_the_registries_register(tmp_path, home):
    """The cached facts (built by the first test of the module, else here) equal those of the live registries,
    which this test process imports, and a new code version is a new cache file."""
    import kdrepro.losses  # noqa: F401  (registers)
    import kdrepro.models.zoo  # noqa: F401

    cache = home / ".cache" / "kdrepro"
    cached = catalog.catalogue(cache)
    assert catalog.as_json(cached) == catalog.as_json(catalog.REGISTERED)
    raw = json.loads((cache / f"catalog-{catalog.code_version()[:16]}.json").read_text())
    assert raw["models"]["plane2"]["options"]["book"] == "str | None" and "fitnet4" in raw["models"]
    assert raw["losses"]["kd"]["inputs"] == "logits" and "temperature" in raw["losses"]["kd"]["options"]
    package = tmp_path / "package"
    for folder in catalog.SOURCES:
        (package / folder).mkdir(parents=True)
        (package / folder / "a.py").write_text("x = 1\n")
    before = catalog.code_version(package)
    (package / "models" / "a.py").write_text("x = 2\n")
    assert catalog.code_version(package) != before


@pytest.mark.parametrize("hint", ["float", "str | None", "float | list[float] | None", "int", "bool"])
def test_an_option_type_reads_back_as_written(hint):
    assert catalog.annotation_text(catalog.annotation(hint)) == hint


def test_a_model_registered_in_this_process_is_known_with_the_catalogue(tmp_path, home):
    """A user's builder (README: register_model) is checked by its own signature, beside the package's."""
    code = ("from kdrepro.models.registry import register_model\n"
            "from kdrepro.catalog import check_model_options, list_models, ModelError\n"
            "@register_model('mynet', family='mynet', depth=3)\n"
            "def mynet(num_classes: int, in_channels: int, image_size: int, width: float = 1.0): ...\n"
            "check_model_options('mynet', {'width': 0.5})\n"
            "try:\n    check_model_options('mynet', {'width': 'wide'})\nexcept ModelError as err:\n    print(err)\n"
            "print('resnet8' in list_models(), 'mynet' in list_models())\n")
    out = run_python(code, tmp_path, home).stdout.splitlines()
    assert out == ["model 'mynet': option width must be a number, got 'wide'", "True True"]


def test_a_process_that_registered_the_models_and_losses_checks_specs_without_the_catalogue(tmp_path):
    """A training job (which imports the registries) validates its spec from what it registered: no child
    process, no catalogue file, even on a machine where none was built yet."""
    code = ("import kdrepro.losses, kdrepro.models.zoo\n"
            "from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec\n"
            "RunSpec(name='t/s', data=Data('fashion_mnist'), nodes=(Node('student', 'plane2', options={'width': 0.5}),),"
            " edges=(Edge(LABELS, 'student', 'kd', options={'temperature': 4.0}),), epochs=1, seed=0)\n")
    run_python(code, tmp_path, tmp_path)
    assert not list(tmp_path.rglob("catalog-*.json"))


def test_building_the_registry_imports_no_plotting_code_and_a_figure_draws_on_agg(tmp_path, home):
    """Every Snakemake parse builds the registry, which declares the figures but draws none: matplotlib (0.5 s of
    the parse) is imported when a figure renders, and then on its file-only backend."""
    code = ("import sys; from kdrepro.assemble import build_registry; from kdrepro import config, cluster, search_space\n"
            "from kdrepro.paths import DEFAULT_SETTING\n"
            "registry = build_registry(config.validate(config.read_yaml(DEFAULT_SETTING)))\n"
            "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))\n"
            "registry.targets['takd_paths'].render()\n"
            "import matplotlib; print(matplotlib.get_backend().lower())\n")
    assert run_python(code, tmp_path, home).stdout.splitlines() == ["[]", "agg"]
    assert (tmp_path / "figures/default/takd_paths.png").stat().st_size > 10_000
