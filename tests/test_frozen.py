"""A frozen node's outputs, computed once and kept beside the run it loads (kdrepro.engine.frozen): the same bits
as computing them, a miss for everything that changes the numbers, and safe against damage and races."""

import json
import os
import shutil
import threading

import pytest
import torch
from conftest import needs_fashion_mnist

from kdrepro.data.device import DeviceData
from kdrepro.data.sources import DatasetInfo, Split
from kdrepro.engine import frozen as frozen_module
from kdrepro.engine import train as engine
from kdrepro.engine import train_run
from kdrepro.engine.checkpoint import load_checkpoint, save_torch
from kdrepro.engine.frozen import FOLDER, SUFFIX, FrozenOutputs
from kdrepro.graph import LABELS, Data, Edge, Node, RunSpec
from kdrepro.models.zoo import create_model

TEACHER = Node("teacher", "resnet8", {"width": 0.25}, frozen_from="t/r8")


def toy_data(normalization="dataset", n=40):
    g = torch.Generator().manual_seed(1)
    make = lambda n: Split(torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8), torch.arange(n) % 4)  # noqa: E731
    return DeviceData(make(n), make(16), DatasetInfo("toy", 4, 1, 12, (0.5,), (0.25,)), normalization=normalization)


def toy_teacher(seed=0):
    torch.manual_seed(seed)
    return engine.prepare_model(create_model("resnet8", 4, 1, 12, width=0.25), TEACHER, "cpu")


@pytest.fixture
def computed(monkeypatch):
    """The splits whose outputs were computed rather than read (kdrepro.engine.frozen.compute's calls)."""
    calls, real = [], frozen_module.compute

    def spy(model, data, split, reads):
        calls.append(split)
        return real(model, data, split, reads)

    monkeypatch.setattr(frozen_module, "compute", spy)
    return calls


def entries(root):
    return sorted(p.name for p in (root / "t/r8" / FOLDER).glob(f"*{SUFFIX}"))


# -- the key: everything that changes the numbers ---------------------------------------------------
def test_a_second_read_comes_from_the_file_with_the_same_bits(tmp_path, computed):
    data, model = toy_data(), toy_teacher()
    first = FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", ["embedding"])
    again = FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", ["embedding"])
    assert computed == ["train"] and set(again) == {"logits", "embedding"}
    assert all(torch.equal(first[k], again[k]) and first[k].stride() == again[k].stride() for k in first)
    assert all(torch.equal(first[k], v) for k, v in FrozenOutputs(data).outputs(TEACHER, model, "train", ["embedding"]).items())
    assert len(entries(tmp_path)) == 1 and entries(tmp_path)[0].startswith("checkpoint-train-")
    saved = torch.load(tmp_path / "t/r8" / FOLDER / entries(tmp_path)[0], weights_only=True)
    assert json.loads(saved["key"])["slot"]["reads"] == ["embedding"]  # the key is kept in the file, readable


@pytest.mark.parametrize("change", ["weights", "train_subset", "normalization", "reads", "frozen_epoch", "compile", "kernel_pin",
                                    "threads", "torch", "source"])
def test_what_changes_the_numbers_misses(tmp_path, computed, monkeypatch, change):
    data, model = toy_data(), toy_teacher()
    FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", [])
    node, reads, compile_mode, restore = TEACHER, [], None, lambda: None
    if change == "weights":
        model = toy_teacher(seed=1)
    elif change == "train_subset":
        data = toy_data(n=36)
    elif change == "normalization":
        data = toy_data("half")
    elif change == "reads":
        reads = ["feature_map"]
    elif change == "frozen_epoch":
        node = Node("teacher", "resnet8", {"width": 0.25}, frozen_from="t/r8", frozen_epoch=2)
    elif change == "compile":
        compile_mode = "default"  # the key only: nothing is compiled here
    elif change == "kernel_pin":
        monkeypatch.setenv("MKL_CBWR", "SSE4_2" if os.environ.get("MKL_CBWR") != "SSE4_2" else "AVX2")
    elif change == "threads":
        threads = torch.get_num_threads()
        torch.set_num_threads(threads + 1)
        restore = lambda: torch.set_num_threads(threads)  # noqa: E731
    elif change == "torch":
        monkeypatch.setattr(torch, "__version__", torch.__version__ + "+other")
    elif change == "source":
        monkeypatch.setattr(frozen_module, "source_digest", lambda: "another version of the code")
    try:
        FrozenOutputs(data, tmp_path, compile_mode).outputs(node, model, "train", reads)
    finally:
        restore()
    assert computed == ["train", "train"]


def test_a_new_version_replaces_the_old_and_other_slots_stay(tmp_path, computed):
    data = toy_data()
    FrozenOutputs(data, tmp_path).outputs(TEACHER, toy_teacher(), "train", [])
    FrozenOutputs(data, tmp_path).outputs(TEACHER, toy_teacher(), "test", [])
    before = entries(tmp_path)
    FrozenOutputs(data, tmp_path).outputs(TEACHER, toy_teacher(seed=1), "train", [])  # a retrained teacher
    after = entries(tmp_path)
    assert len(before) == len(after) == 2 and computed == ["train", "test", "train"]
    assert [n for n in after if "-test-" in n] == [n for n in before if "-test-" in n]
    assert [n for n in after if "-train-" in n] != [n for n in before if "-train-" in n]


def test_the_frozen_accuracy_is_the_accuracy_of_the_network(tmp_path):
    data, model = toy_data(), toy_teacher()
    spec = RunSpec(name="t/s", data=Data("toy"), nodes=(TEACHER, Node("student", "resnet8", {"width": 0.25})),
                   edges=(Edge(LABELS, "student", "ce"),), epochs=1, seed=0)
    models = {"teacher": model}
    expected = engine.accuracy(model, data, "test")
    assert engine.frozen_accuracies(spec, models, FrozenOutputs(data, tmp_path)) == {"teacher": expected}
    assert engine.frozen_accuracies(spec, models, FrozenOutputs(data, tmp_path)) == {"teacher": expected}  # read back


# -- damage and races ---------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "other key"])
def test_a_damaged_entry_is_computed_again_and_replaced(tmp_path, computed, capfd, damage):
    data, model = toy_data(), toy_teacher()
    first = FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", [])
    path = tmp_path / "t/r8" / FOLDER / entries(tmp_path)[0]
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flipped byte":
        saved = torch.load(path, weights_only=True)
        saved["outputs"]["logits"][0, 0] += 1  # the checksum still says what was written
        torch.save(saved, path)
    else:
        saved = torch.load(path, weights_only=True)
        save_torch({k: v for k, v in saved.items() if k != "content_sha256"} | {"key": "{}"}, path)
    again = FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", [])
    assert computed == ["train", "train"] and torch.equal(first["logits"], again["logits"])
    assert f"frozen outputs {path}" in capfd.readouterr().err
    assert torch.equal(torch.load(path, weights_only=True)["outputs"]["logits"], first["logits"])  # rewritten whole


def test_entries_are_group_readable_and_an_unwritable_folder_only_costs_the_computation(tmp_path, capfd):
    data, model = toy_data(), toy_teacher()
    previous = os.umask(0o027)
    try:
        FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", [])
    finally:
        os.umask(previous)
    assert (tmp_path / "t/r8" / FOLDER / entries(tmp_path)[0]).stat().st_mode & 0o777 == 0o640
    blocked = tmp_path / "blocked"
    (blocked / "t/r8").mkdir(parents=True)
    (blocked / "t/r8" / FOLDER).write_text("a file where the folder would be")  # fails for root too, unlike chmod
    out = FrozenOutputs(data, blocked).outputs(TEACHER, model, "train", [])
    assert out["logits"].shape == (40, 4) and "not kept for later runs" in capfd.readouterr().err


def test_two_runs_computing_one_entry_at_once_both_succeed(tmp_path, monkeypatch):
    """Both compute (neither entry exists yet), both write: each write is whole, the last rename wins."""
    data, model = toy_data(), toy_teacher()
    together, real = threading.Barrier(2), frozen_module.compute

    def slow(*args):
        together.wait(timeout=30)
        return real(*args)

    monkeypatch.setattr(frozen_module, "compute", slow)
    results = [None, None]

    def run(i):
        results[i] = FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", [])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(results[0]["logits"], results[1]["logits"])
    assert len(entries(tmp_path)) == 1 and not list((tmp_path / "t/r8" / FOLDER).glob(".*.tmp"))
    monkeypatch.setattr(frozen_module, "compute", lambda *args: pytest.fail("the entry should be read"))
    assert torch.equal(FrozenOutputs(data, tmp_path).outputs(TEACHER, model, "train", [])["logits"], results[0]["logits"])


# -- real runs: a student trained with a cold, a warm and no cache gives the same bits ----------------
DATA = Data("fashion_mnist", train_subset=256, test_subset=128, pad_to=32, normalization="half")


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = RunSpec(name="t/r8", data=DATA, nodes=(Node("student", "resnet8", {"width": 0.25}),),
                   edges=(Edge(LABELS, "student", "ce"),), epochs=1, seed=0, batch_size=64)
    train_run(spec, root / "t/r8", root, progress=False)
    return root / "t/r8"


@pytest.fixture
def teacher_root(trained_teacher, tmp_path):
    """The teacher's run in a runs folder of this test's own, with nothing kept beside it yet."""
    shutil.copytree(trained_teacher, tmp_path / "runs/t/r8")
    return tmp_path / "runs"


def student(data=DATA):
    """KD on the logits, CC on the embeddings and SUR batches clustered by the teacher's embeddings: every
    output a run reads from its frozen teacher before the first epoch."""
    edges = (Edge(LABELS, "student", "ce", 0.5), Edge("teacher", "student", "kd", 0.5), Edge("teacher", "student", "cc", 2.0))
    sampler = {"name": "sur", "superclasses": 3, "superclasses_per_batch": 2, "node": "teacher"}
    return RunSpec(name="t/cc", data=data, nodes=(TEACHER, Node("student", "resnet8", {"width": 0.25})), edges=edges,
                   epochs=1, seed=0, batch_size=64, sampler=sampler)


def outcome(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["wall_seconds"]
    epochs = [line.rsplit(",", 1)[0] for line in (run_dir / "epochs.csv").read_text().splitlines()]  # seconds dropped
    weights = load_checkpoint(run_dir / "checkpoint.pt")["model"]["state_dict"]
    return metrics, epochs, weights


def same(a, b):
    assert a[0] == b[0] and a[1] == b[1]
    assert a[2].keys() == b[2].keys() and all(torch.equal(a[2][k], b[2][k]) for k in a[2])


@needs_fashion_mnist
def test_a_student_trains_to_the_same_bits_with_a_cold_a_warm_and_no_cache(teacher_root, tmp_path, computed, monkeypatch):
    train_run(student(), tmp_path / "cold", teacher_root, progress=False)
    assert computed == ["train", "test"]  # one pass for the edges and the sampler (both read the embeddings)
    assert len(entries(teacher_root)) == 2
    train_run(student(), tmp_path / "warm", teacher_root, progress=False)
    assert computed == ["train", "test"]  # nothing computed again
    with monkeypatch.context() as m:
        m.setattr(engine, "FrozenOutputs", lambda data, runs_root, compile_mode: FrozenOutputs(data))  # no cache
        train_run(student(), tmp_path / "uncached", teacher_root, progress=False)
    cold = outcome(tmp_path / "cold")
    same(cold, outcome(tmp_path / "warm"))
    same(cold, outcome(tmp_path / "uncached"))
    # the teacher's test accuracy is its own record: the same weights on the same test images
    teacher = json.loads((teacher_root / "t/r8/metrics.json").read_text())
    assert cold[0]["node_test_acc"]["teacher"] == teacher["final_test_acc"]


@needs_fashion_mnist
def test_a_retrained_teacher_or_another_subset_misses(teacher_root, tmp_path, computed):
    train_run(student(), tmp_path / "first", teacher_root, progress=False)
    computed.clear()
    # another subset of the training images: the training split is computed again, the test split is the same
    train_run(student(Data("fashion_mnist", train_subset=192, test_subset=128, pad_to=32, normalization="half")),
              tmp_path / "subset", teacher_root, progress=False)
    assert computed == ["train"]
    computed.clear()
    checkpoint = teacher_root / "t/r8/checkpoint.pt"
    saved = load_checkpoint(checkpoint)
    saved["model"]["state_dict"]["fc.bias"] += torch.linspace(0, 1, 10)  # a teacher retrained into its folder
    save_torch(saved, checkpoint)
    train_run(student(), tmp_path / "retrained", teacher_root, progress=False)
    assert computed == ["train", "test"]
    first, retrained = outcome(tmp_path / "first")[2], outcome(tmp_path / "retrained")[2]
    assert not torch.equal(first["fc.weight"], retrained["fc.weight"])  # it learnt from the new teacher's outputs
