"""External teachers: a file trained elsewhere as a frozen node's weights, named by its bytes and not its path;
the setting's `teachers`, checked before any work; the comparison distilling from one without training it."""

import hashlib
import json
import os
import re
import shutil

import pytest
import torch

from conftest import REPO, copy_workflow, needs_fashion_mnist, setting, snakemake
from kdrepro.assemble import assemble
from kdrepro.cli import main as kdrepro
from kdrepro.config import ConfigError
from kdrepro.engine import CheckpointError, evaluate_run
from kdrepro.engine.checkpoint import FORMAT, model_record, save_torch
from kdrepro.graph import LABELS, Data, Edge, Node, Optimizer, RunSpec, SpecError
from kdrepro.models.zoo import create_model
from kdrepro.report.runs_index import last_loss
from kdrepro.teachers import with_file_hashes

DATA = Data("fashion_mnist", train_subset=256, test_subset=128, pad_to=32, normalization="half")
SMOKE_TEACHER = {"arch": "resnet14", "options": {"width": 0.25}, "dataset": "fashion_mnist"}  # fits the smoke setting's data


def fabricated(path, arch="plane4", classes=10, **options):
    """A network of `arch` for 1-channel 32x32 images, its state_dict saved to `path` (as a user's training would)."""
    torch.manual_seed(0)
    torch.save(create_model(arch, classes, 1, 32, **options).state_dict(), path)
    return path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def distilled_from(teacher: Node, name="ext/kd") -> RunSpec:
    return RunSpec(name=name, data=DATA, nodes=(teacher, Node("student", "plane2")),
                   edges=(Edge(LABELS, "student", "ce", 0.5), Edge("teacher", "student", "kd", 0.5, options={"temperature": 4.0})),
                   epochs=1, seed=0, batch_size=64, optimizer=Optimizer(lr=0.05))


def measured(teacher: Node, name="ext/eval") -> RunSpec:
    return RunSpec(name=name, data=DATA, nodes=(teacher,), edges=(), epochs=0, seed=0, eval_node="teacher")


@needs_fashion_mnist
def test_a_fabricated_file_teaches_a_short_run_named_by_its_bytes_not_its_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = fabricated(tmp_path / "teacher.pt")
    by_content = distilled_from(Node("teacher", "plane4", weights_sha256=sha256(path)))
    # `kdrepro train --spec-json` takes the node as a user writes it: the file's path (relative), no hash
    raw = {**by_content.to_dict(), "nodes": [{"name": "teacher", "arch": "plane4", "weights_file": "teacher.pt"},
                                             {"name": "student", "arch": "plane2"}]}
    kdrepro(["train", "--spec-json", json.dumps(raw), "--setting", "ext", "--no-progress"])
    metrics = json.loads((tmp_path / "results/ext/runs/ext/kd/metrics.json").read_text())
    assert metrics["config_hash"] == by_content.config_hash
    # the teacher's accuracy as the KD run saw it is the file's, as an evaluation run measures it
    teacher = Node("teacher", "plane4", weights_sha256=sha256(path), weights_file=str(path))
    evaluated = evaluate_run(measured(teacher), tmp_path / "eval", tmp_path, setting="ext")
    assert evaluated["best_test_acc"] == metrics["node_test_acc"]["teacher"] and evaluated["epochs"] == 0
    saved = torch.load(tmp_path / "eval/checkpoint.pt")["model"]["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in torch.load(path).items())
    assert last_loss(tmp_path / "eval/epochs.csv") == ""  # runs.csv's row of a run that trained nothing
    # a copy elsewhere and a symlink are the same teacher; changed bytes are another configuration
    (tmp_path / "moved").mkdir()
    shutil.copy(path, tmp_path / "moved/t.pt")
    (tmp_path / "link.pt").symlink_to(path)

    def spec_naming(file) -> RunSpec:
        return RunSpec.from_dict(with_file_hashes({**raw, "nodes": [{**raw["nodes"][0], "weights_file": str(file)}, raw["nodes"][1]]}))

    assert spec_naming(tmp_path / "moved/t.pt").config_hash == spec_naming(tmp_path / "link.pt").config_hash == by_content.config_hash
    weights = torch.load(path)
    weights[next(reversed(weights))] += 1.0  # the classifier's bias
    torch.save(weights, path)
    os.utime(path, ns=(1, 1))  # another version of the file, whatever the file system's time resolution
    assert spec_naming(path).config_hash != by_content.config_hash
    with pytest.raises(CheckpointError, match="changed after the spec named it"):
        evaluate_run(measured(teacher, "ext/eval2"), tmp_path / "eval2", tmp_path)


def test_a_node_of_an_external_file_is_frozen_and_a_wrong_one_is_refused_with_its_key():
    sha = "0" * 64
    teacher = Node("teacher", "plane4", weights_sha256=sha)
    assert not teacher.trainable and distilled_from(teacher).dependencies == []
    assert measured(teacher).evaluation and not distilled_from(teacher).evaluation
    # the path is outside the hash, the content in it
    assert distilled_from(Node("teacher", "plane4", weights_sha256=sha, weights_file="/a/t.pt")).config_hash == distilled_from(teacher).config_hash
    assert distilled_from(Node("teacher", "plane4", weights_sha256="1" * 64)).config_hash != distilled_from(teacher).config_hash
    for node, message in [(Node("teacher", "plane4", weights_file="t.pt"), "weights_file needs weights_sha256"),
                          (Node("teacher", "plane4", weights_sha256="abc"), "64 lowercase hex digits"),
                          (Node("teacher", "plane4", weights_sha256=sha, frozen_from="r"), "takes no frozen_from")]:
        with pytest.raises(SpecError, match=message):
            distilled_from(node)
    with pytest.raises(SpecError, match="no trainable node .*epochs 0"):
        RunSpec(name="e", data=DATA, nodes=(teacher,), edges=(), epochs=1, seed=0, eval_node="teacher")
    with pytest.raises(SpecError, match="epochs must be at least 1"):
        RunSpec(name="e", data=DATA, nodes=(Node("student", "plane2"),), edges=(Edge(LABELS, "student", "ce"),), epochs=0, seed=0)


def with_teacher(name="ext", pairs=None, **entry):
    """The smoke setting, comparing kd on [name, resnet8], with one external teacher."""
    return setting("smoke", experiments=["compare"], teachers={name: {**SMOKE_TEACHER, **entry}},
                   compare={"pairs": pairs or [[name, "resnet8"]], "methods": ["kd"]})


def test_a_teacher_that_is_not_there_or_not_known_stops_the_setting_naming_the_key_and_the_path(tmp_path):
    with pytest.raises(ConfigError, match=f"teachers.ext.path: no file at {re.escape(str(tmp_path / 'none.pt'))}"):
        with_teacher(path=str(tmp_path / "none.pt"))
    path = str(fabricated(tmp_path / "t.pt", "resnet14", width=0.25))
    with pytest.raises(ConfigError, match="teachers.ext.arch: unknown model 'resnet15'"):
        with_teacher(path=path, arch="resnet15")
    with pytest.raises(ConfigError, match="teachers.ext.dataset: 'mnist' is not one of the setting's datasets"):
        with_teacher(path=path, dataset="mnist")
    with pytest.raises(ConfigError, match="teachers.ext.options: model 'resnet14' has no option"):
        with_teacher(path=path, options={"depth": 3})
    with pytest.raises(ConfigError, match="teachers.resnet8: 'resnet8' is a model's name"):
        with_teacher(name="resnet8", path=path)


def test_a_file_that_does_not_fit_its_network_is_refused_before_any_run_naming_the_key_and_the_path(tmp_path):
    path = fabricated(tmp_path / "t.pt", "resnet14", width=0.25)
    for entry, how in [({"arch": "resnet20"}, r"keys missing: layer1\.2\."),
                       ({"options": {"width": 0.5}}, r"shapes differ: conv1\.weight \(4, 1, 3, 3\) \(the network's \(8, 1, 3, 3\)\)")]:
        with pytest.raises(CheckpointError, match=f"config key teachers.ext.path: {re.escape(str(path))} does not fit .*{how}"):
            assemble(with_teacher(path=str(path), **entry))
    hundred = fabricated(tmp_path / "t100.pt", "resnet14", classes=100, width=0.25)
    with pytest.raises(CheckpointError, match=r"teachers.ext.path: .*t100.pt does not fit .*its classifier is for 100 classes "
                                              r"\(fc.weight \(100, 16\), fc.bias \(100,\)\), the dataset has 10"):
        assemble(with_teacher(path=str(hundred)))
    # a kdrepro checkpoint of another setting: its record must be the teacher's network
    torch.manual_seed(0)
    record = model_record("resnet14", {"width": 0.25}, 10, create_model("resnet14", 10, 1, 32, width=0.25))
    save_torch({"format": FORMAT, "run": "elsewhere", "config_hash": "0", "epoch": 1, "model": record,
                "nodes": {"student": record}, "edges": {}}, tmp_path / "checkpoint.pt")
    assemble(with_teacher(path=str(tmp_path / "checkpoint.pt")))
    with pytest.raises(CheckpointError, match="is a kdrepro checkpoint of resnet14 for 10 classes .*not of resnet20"):
        assemble(with_teacher(path=str(tmp_path / "checkpoint.pt"), arch="resnet20"))


def test_every_method_of_an_external_pair_distils_from_the_file_and_nothing_trains_the_teacher(tmp_path):
    path = fabricated(tmp_path / "t.pt", "resnet14", width=0.25)
    config = setting("smoke", experiments=["compare"], teachers={"ext": {**SMOKE_TEACHER, "path": str(path)}},
                     compare={"pairs": [["ext", "resnet8"]], "methods": ["kd", "takd", "at", "fitnets", "tfkd_self"]})
    registry, papers = assemble(config)
    compare = papers["compare"]
    assert compare.runs("teacher:ext>resnet8", "fashion_mnist") == ["external/fashion_mnist/ext"]
    evaluation = registry.runs["external/fashion_mnist/ext"]
    assert evaluation.evaluation and evaluation.data == registry.runs["takd/fashion_mnist/resnet8/s0"].data
    file_node = Node("teacher", "resnet14", {"width": 0.25}, weights_sha256=sha256(path))
    kd, assistant = registry.runs["takd/fashion_mnist/ext-resnet8/s0"], registry.runs["takd/fashion_mnist/ext-resnet56/s0"]
    at, hint = registry.runs["compare/fashion_mnist/ext-resnet8/at/s0"], registry.runs["compare/fashion_mnist/ext-resnet8/fitnets-stage1/s0"]
    assert all(spec.nodes[0] == file_node for spec in (kd, assistant, at, hint))
    assert registry.runs["takd/fashion_mnist/ext-resnet56-resnet8/s0"].dependencies == [assistant.name]
    trained = {(node.arch, name) for name, spec in registry.runs.items() for node in spec.nodes if node.trainable}
    assert not any(arch == "resnet14" for arch, _ in trained)  # no run trains the teacher's network
    assert "External teacher, trained elsewhere and not here: ext (resnet14, width 0.25; file sha256 " in compare.recipe_note()
    with pytest.raises(SpecError, match=r"compare.pairs.0.1: ext is an external teacher"):
        assemble(with_teacher(pairs=[["resnet14", "ext"]], path=str(path)))
    with pytest.raises(SpecError, match=r"compare.pairs.0.0: the external teacher ext was trained on fashion_mnist .*on mnist too"):
        assemble({**with_teacher(path=str(path)), "datasets": ["fashion_mnist", "mnist"]})


def readme_teacher_block() -> str:
    """The setting lines of the README's external-teacher example."""
    return re.search(r"<!-- doc-test of tests/test_teachers.py -->\n```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)[1]


@pytest.mark.workflow
def test_a_dry_run_of_the_readmes_external_teacher_plans_no_training_of_it(tmp_path):
    work = copy_workflow(tmp_path / "work")
    (work / "teachers").mkdir()
    fabricated(work / "teachers/r14.pt", "resnet14", width=0.25)  # as the README saves it
    (work / "ext.yaml").write_text("experiments: [compare]\n" + readme_teacher_block())
    out = snakemake(work, "-n", "compare_table", "--configfile", "config/smoke.yaml", "ext.yaml").stdout
    planned = set(re.findall(r"wildcards: run=(\S+)", out))
    assert {"external/fashion_mnist/r14", "takd/fashion_mnist/r14-resnet8/s0", "takd/fashion_mnist/r14-resnet56/s0",
            "compare/fashion_mnist/r14-resnet8/fitnets-stage1/s0"} <= planned
    # TAKD's teacher runs are named by their chain: neither the teacher's name nor its network is trained alone
    assert not planned & {"takd/fashion_mnist/r14/s0", "takd/fashion_mnist/resnet14/s0"}
    assert not any(run.startswith("takd/fashion_mnist/resnet14") for run in planned)
