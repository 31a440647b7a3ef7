"""A user's own image folders, named by the setting (kdrepro.data.folders): several at once, each with its
root and channels; runs named by the images' content, not their path; the root reaches the jobs through the
environment."""

import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, setting
from PIL import Image

from kdrepro import cli
from kdrepro.assemble import build_registry
from kdrepro.config import ConfigError
from kdrepro.data import DatasetError, folders, sources
from kdrepro.data.folders import ROOTS_ENV, fingerprint, setting_meta
from kdrepro.data.sources import load_folder


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    """Stamps and tensors under the test's folder; the roots' variable as the test leaves it, undone after."""
    monkeypatch.setattr(folders, "STAMPS", tmp_path / "cache" / "stamps")
    monkeypatch.setattr(sources, "TENSORS", tmp_path / "cache")
    monkeypatch.delenv(ROOTS_ENV, raising=False)


def write_folder(root: Path, classes: int, colour: bool, train: int = 4, test: int = 2, seed: int = 0) -> Path:
    """root/{train,test}/c<k>/<i>.png: 8x8 noise with a bright column at the class's place."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for label in range(classes):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                image = rng.integers(0, 60, (8, 8, 3) if colour else (8, 8), dtype=np.uint8)
                image[:, 2 * label] += 150
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


def two_folders(base: Path) -> tuple[Path, Path]:
    return write_folder(base / "grey", 3, colour=False), write_folder(base / "colour", 2, colour=True)


def folder_setting(grey: Path, colour: Path, **overrides) -> dict:
    """The smoke setting on both folders (TAKD only: the papers' other experiments need more images)."""
    return setting("smoke", **{"datasets": ["grey", "colour"], "experiments": ["takd"],
                               "image_folders": {"grey": {"root": str(grey)}, "colour": {"root": str(colour), "channels": None}},
                               "data": {"train_subset": None, "test_subset": None}, **overrides})


def folder_runs(config: dict, dataset: str) -> dict:
    return {name: spec for name, spec in build_registry(config).runs.items() if spec.data.dataset == dataset}


def test_two_named_folders_build_one_registry_with_their_own_channels_and_no_root(tmp_path):
    grey, colour = two_folders(tmp_path)
    config = folder_setting(grey, colour)
    assert (setting_meta("grey", config).channels, setting_meta("colour", config).channels) == (1, 3)
    assert (setting_meta("grey", config).num_classes, setting_meta("grey", config).train) == (3, 12)
    registry = build_registry(config)
    for dataset, folder in (("grey", grey), ("colour", colour)):
        specs = [s for s in registry.runs.values() if s.data.dataset == dataset]
        assert specs and all(s.data.root is None and s.data.fingerprint == fingerprint(folder) for s in specs)
        assert not any(str(tmp_path) in s.to_json() for s in specs)
    # a paper block's datasets pick among them, as among the built-in ones
    own = build_registry(folder_setting(grey, colour, takd={"datasets": ["colour"]}))
    assert own.runs and {spec.data.dataset for spec in own.runs.values()} == {"colour"}
    # the loader reads each as the setting says, and agrees with the facts known from the listing
    os.environ[ROOTS_ENV] = json.dumps({"grey": str(grey), "colour": str(colour)})
    for dataset, channels in (("grey", None), ("colour", None)):
        train, test, info = load_folder(dataset, channels)
        meta = setting_meta(dataset, config)
        assert (info.channels, info.num_classes, info.size, len(train.labels), len(test.labels)) == \
               (meta.channels, meta.num_classes, meta.size, meta.train, meta.test)
    assert load_folder("grey", 3)[0].images.shape == (12, 3, 8, 8)
    assert load_folder("colour", 1)[0].images.shape == (8, 1, 8, 8)
    # asked for RGB, the grey folder's runs say so, and that is another configuration
    rgb = folder_runs(folder_setting(grey, colour, datasets=["grey"], image_folders={"grey": {"root": str(grey), "channels": 3}}), "grey")
    same = folder_runs(config, "grey")
    run = "takd/grey/plane2/s0"
    assert rgb[run].data.channels == 3 and rgb[run].config_hash != same[run].config_hash


def test_a_symlink_or_a_copy_is_the_same_run_and_new_content_another(tmp_path):
    grey, colour = two_folders(tmp_path)
    before = folder_runs(folder_setting(grey, colour), "grey")
    (tmp_path / "link").symlink_to(grey, target_is_directory=True)
    shutil.copytree(grey, tmp_path / "moved" / "copy")
    for elsewhere in (tmp_path / "link", tmp_path / "moved" / "copy"):
        again = folder_runs(folder_setting(elsewhere, colour), "grey")
        assert {n: (s.to_json(), s.config_hash) for n, s in again.items()} == {n: (s.to_json(), s.config_hash) for n, s in before.items()}
    image = grey / "train" / "c0" / "0.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 1  # one pixel: same listing, same sizes, other bytes
    Image.fromarray(pixels).save(image)
    changed = folder_runs(folder_setting(grey, colour), "grey")
    run = "takd/grey/plane2/s0"
    assert changed[run].data.fingerprint != before[run].data.fingerprint
    assert changed[run].config_hash != before[run].config_hash
    # a job planned on the old images refuses the new ones
    os.environ[ROOTS_ENV] = json.dumps({"grey": str(grey)})
    with pytest.raises(DatasetError, match="holds other images than this run was planned on"):
        load_folder("grey", None, before[run].data.fingerprint)


def test_the_contents_are_hashed_once_per_version_of_the_files(tmp_path, monkeypatch):
    grey = write_folder(tmp_path / "grey", 2, colour=False)
    first = fingerprint(grey)

    def unread(path):
        raise AssertionError(f"{path} read again")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "read_bytes", unread)
        assert fingerprint(grey) == first  # the listing's stats only
    (grey / "test" / "c1" / "extra.png").write_bytes((grey / "test" / "c1" / "0.png").read_bytes())
    assert fingerprint(grey) != first  # a new file: hashed again


def test_missing_roots_and_unknown_datasets_are_named(tmp_path):
    grey, colour = two_folders(tmp_path)
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"config key image_folders.grey.root: .*{re.escape(str(missing))} does not exist"):
        folder_setting(missing, colour)
    shutil.rmtree(grey / "test")
    with pytest.raises(ConfigError, match=f"image_folders.colour.root: .*{re.escape(str(grey))} has no test/ folder"):
        folder_setting(colour, grey)
    with pytest.raises(ConfigError, match="datasets.1: unknown dataset 'greyy'; the known datasets: cifar10, .*colour, .*grey"):
        folder_setting(colour, colour, datasets=["grey", "greyy"])
    with pytest.raises(ConfigError, match="takd.datasets.0: greyy is not one of the setting's datasets"):
        folder_setting(colour, colour, takd={"datasets": ["greyy"]})
    with pytest.raises(ConfigError, match="config key data.roots.image_folder: .*does not exist"):
        setting("smoke", datasets=["image_folder"], data={"roots": {"image_folder": str(missing)}})
    # a job that was not given the root names the variable and the setting key
    with pytest.raises(DatasetError, match=f"{ROOTS_ENV} is not set.*image_folders.grey.root"):
        load_folder("grey", None)
    os.environ[ROOTS_ENV] = json.dumps({"grey": str(missing)})
    with pytest.raises(DatasetError, match=f"{re.escape(str(missing))} does not exist.*set image_folders.grey.root"):
        load_folder("grey", None)


def test_a_setting_without_roots_takes_them_from_the_environment(tmp_path):
    """results/<setting>/setting.json, which the search and render jobs load, is written without the roots."""
    from kdrepro import config as settings
    from kdrepro.data.folders import export_roots, without_roots

    grey, colour = two_folders(tmp_path)
    config = folder_setting(grey, colour)
    bare = without_roots(config)
    assert bare["image_folders"] == {"grey": {"channels": None}, "colour": {"channels": None}}
    (tmp_path / "setting.json").write_text(json.dumps(bare))
    with pytest.raises(ConfigError, match=f"config key image_folders.grey.root: image folder 'grey': no root is given .*{ROOTS_ENV}"):
        settings.load([tmp_path / "setting.json"])
    export_roots(config)
    again = settings.load([tmp_path / "setting.json"])
    assert build_registry(again).runs["takd/grey/plane2/s0"] == build_registry(config).runs["takd/grey/plane2/s0"]


def test_a_mixed_folder_read_as_it_is_is_refused_with_the_image(tmp_path):
    grey = write_folder(tmp_path / "grey", 2, colour=False)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(grey / "train" / "c1" / "rgb.png")
    with pytest.raises(DatasetError, match="rgb.png is colour.*image_folders.grey.channels"):
        load_folder("grey", None, root=grey)
    assert load_folder("grey", 3, root=grey)[2].channels == 3


def test_the_shipped_settings_keep_their_config_hashes():
    """Every run of results/default/runs.csv has the hash it was trained under."""
    with open(REPO / "results" / "default" / "runs.csv") as handle:
        recorded = {row["run"]: row["config_hash"] for row in csv.DictReader(handle)}
    runs = build_registry(setting("config")).runs
    assert recorded and {run: runs[run].config_hash for run in recorded} == recorded


def test_the_image_folder_of_older_settings_is_a_named_folder_read_as_rgb(tmp_path):
    grey = write_folder(tmp_path / "grey", 2, colour=False)
    config = setting("smoke", datasets=["image_folder"], experiments=["takd"], data={"roots": {"image_folder": str(grey)},
                                                                                     "train_subset": None, "test_subset": None})
    assert setting_meta("image_folder", config).channels == 3
    spec = build_registry(config).runs["takd/image_folder/plane2/s0"]
    assert (spec.data.root, spec.data.channels, spec.data.fingerprint) == (None, 3, fingerprint(grey))


def test_the_readme_setting_builds_on_a_folder_of_images(tmp_path):
    """The README's own-data example (my.yaml), with its module and a folder of images where it says; in a process
    of its own, whose loss registry the user's module may fill."""
    import subprocess
    import sys

    from test_compare import readme_files

    files = readme_files()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (name, entry), = yaml.safe_load(files["my.yaml"])["image_folders"].items()
    write_folder(tmp_path / entry["root"], 3, colour=True)
    code = ("import json; from kdrepro import config; from kdrepro.assemble import build_registry\n"
            "runs = build_registry(config.load(['my.yaml'])).runs\n"
            "print(json.dumps({n: s.to_dict()['data'] for n, s in runs.items()}))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mine = {n: data for n, data in json.loads(proc.stdout).items() if n.startswith(f"compare/{name}/")}
    assert mine and all(data["root"] is None and data["fingerprint"] == fingerprint(tmp_path / entry["root"])
                        for data in mine.values())


def test_one_epoch_on_the_grey_folder_through_kdrepro_train(tmp_path, monkeypatch, capsys):
    """`kdrepro train RUN --configfile`: the spec has no root, the command gives the job the setting's."""
    grey, colour = two_folders(tmp_path)
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump({"setting": "mine", "datasets": ["grey"], "experiments": ["takd"],
                                   "image_folders": {"grey": {"root": str(grey)}},
                                   "data": {"train_subset": None, "test_subset": None}}))
    monkeypatch.chdir(tmp_path)
    cli.main(["train", "takd/grey/plane2/s0", "--configfile", str(REPO / "config" / "smoke.yaml"), "--configfile", str(own),
              "--no-progress"])
    assert json.loads(os.environ[ROOTS_ENV]) == {"grey": str(grey)}
    metrics = json.loads((tmp_path / "results/mine/runs/takd/grey/plane2/s0/metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["final_test_acc"] <= 100
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["run"] == "takd/grey/plane2/s0"


@pytest.mark.slow  # three real Snakemake runs: in `make test-slow` and CI
@pytest.mark.workflow
def test_the_workflow_trains_on_a_folder_and_a_symlink_to_it_leaves_nothing_to_do(tmp_path):
    """Snakemake's jobs find the root in the environment the Snakefile sets; the rule's params (the spec) name the
    images, not the path, so the same images reached through a symlink change nothing (its rerun triggers included)."""
    from conftest import copy_workflow, snakemake

    work = copy_workflow(tmp_path / "work")
    grey = write_folder(tmp_path / "images" / "grey", 2, colour=False)
    target = "results/mine/runs/takd/grey/plane2/s0/metrics.json"
    setting_json = "results/mine/setting.json"  # every search's and target's input

    def mine(root: Path) -> str:
        (work / "mine.yaml").write_text(yaml.safe_dump({
            "setting": "mine", "datasets": ["grey"], "experiments": ["takd"], "train_server": False,
            "image_folders": {"grey": {"root": str(root)}}, "data": {"train_subset": None, "test_subset": None}}))
        return "mine.yaml"

    snakemake(work, target, setting_json, "--configfile", "config/smoke.yaml", mine(grey), "--cores", "1")
    assert json.loads((work / target).read_text())["epochs"] == 1
    assert "root" not in json.loads((work / setting_json).read_text())["image_folders"]["grey"]
    (tmp_path / "link").symlink_to(grey, target_is_directory=True)
    out = snakemake(work, target, setting_json, "-n", "--configfile", "config/smoke.yaml", mine(tmp_path / "link")).stdout
    assert "Nothing to be done" in out, out
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(grey / "train" / "c0" / "0.png")
    out = snakemake(work, target, "-n", "--configfile", "config/smoke.yaml", mine(tmp_path / "link")).stdout
    assert "rule train" in out and "params" in out.lower(), out


def test_list_datasets_shows_the_settings_folders_and_the_summary_follows_their_content(tmp_path, capsys):
    from kdrepro import summary

    grey, colour = two_folders(tmp_path)
    config = folder_setting(grey, colour)
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump({key: config[key] for key in ("datasets", "image_folders", "data", "experiments")}))
    cli.main(["list", "datasets", "--configfile", str(REPO / "config" / "smoke.yaml"), "--configfile", str(own)])
    lines = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()}
    assert lines["grey"] == f"3 classes, 1 channel(s), 8x8, 12 train / 6 test images (at {grey})"
    assert lines["colour"].startswith("2 classes, 3 channel(s), 8x8, 8 train / 4 test images")
    # `kdrepro list` and `status` read a cached summary of the runs and their hashes: new images are another summary
    before = summary.key(config)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(grey / "train" / "c0" / "0.png")
    assert summary.key(config) != before
