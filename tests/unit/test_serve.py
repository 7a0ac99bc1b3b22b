"""The servable ensemble without MLflow: its inputs, its bundle of fold models, its output table."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
import torch

from orchestrator.blend import blend, shift
from orchestrator.config import TrialTables, parse_grid
from orchestrator.data.sources import folder_submission
from orchestrator.errors import InputError
from orchestrator.search.plan import plan_trials
from orchestrator.serve.bundle import EnsembleSpec, MemberSpec
from orchestrator.serve.inputs import read_inputs
from orchestrator.serve.model import Ensemble, ImageInputError, image_sources, top_classes
from orchestrator.train.models import create_model

TABLES = TrialTables(folds_path="f.parquet", test_path=None, num_classes=3)
CLASSES = ["ant", "bee", "cat"]


def test_a_folder_is_searched_recursively_in_order_and_hidden_files_are_skipped(tiny_sketch):
    (tiny_sketch / "train" / ".hidden.png").write_bytes(b"not read")
    inputs = read_inputs(tiny_sketch / "train")
    assert inputs.submission is folder_submission and len(inputs.rows) == 18  # as the ensemble of an image_folder grid
    assert inputs.rows["rel_path"].tolist() == sorted(inputs.rows["rel_path"])
    assert inputs.rows["rel_path"][0] == "ant/0.png" and inputs.rows["image_path"][0].startswith("/")


def test_a_csv_reads_paths_from_its_folder_and_refuses_one_that_escapes_it(tiny_sketch):
    csv = tiny_sketch / "train" / "some.csv"
    csv.write_text("image_path\nbee/1.png\nant/0.png\n")
    assert read_inputs(csv).rows["rel_path"].tolist() == ["bee/1.png", "ant/0.png"]
    csv.write_text("image_path\nbee/1.png\n../train.csv\n")
    with pytest.raises(InputError, match=r"some.csv line 3: image_path '../train.csv' escapes"):
        read_inputs(csv)


def test_competition_roots_bring_their_submission_writer(tiny_sketch, mask_root):
    (tiny_sketch / "test").mkdir()
    (tiny_sketch / "test" / "x.png").write_bytes((tiny_sketch / "train" / "ant" / "0.png").read_bytes())
    (tiny_sketch / "test.csv").write_text("image_path\nx.png\n")
    sketch = read_inputs(tiny_sketch)
    assert sketch.submission is not None and sketch.rows["rel_path"].tolist() == ["x.png"]
    mask = read_inputs(mask_root)
    assert mask.rows["rel_path"].tolist() == ["eval_05.jpg", "eval_02.jpg", "eval_09.jpg", "eval_00.jpg", "eval_07.jpg"]
    written = mask.submission(mask.rows, np.arange(5), CLASSES)
    assert written.columns.tolist() == ["ImageID", "ans"] and written["ImageID"].tolist() == mask.rows["rel_path"].tolist()


def test_no_images_or_no_such_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no images"):
        read_inputs(tmp_path)
    with pytest.raises(InputError, match=r"missing: not an image file .*, a folder of images, a \.csv"):
        read_inputs(tmp_path / "missing")
    (tmp_path / "broken.png").write_text("not an image")
    with pytest.raises(InputError, match=r"broken\.png"):
        read_inputs(tmp_path / "broken.png")


def test_a_single_image_file_is_one_row(tiny_sketch):
    one = read_inputs(tiny_sketch / "train" / "bee" / "1.png")
    assert one.kind.startswith("image ") and one.rows["rel_path"].tolist() == ["1.png"] and len(one.rows) == 1
    assert one.rows["image_path"][0] == str((tiny_sketch / "train" / "bee" / "1.png").resolve())


def test_sources_are_paths_or_base64_and_a_bad_row_is_named(tiny_sketch):
    path = str(tiny_sketch / "train" / "ant" / "0.png")
    encoded = base64.b64encode((tiny_sketch / "train" / "bee" / "1.png").read_bytes()).decode()
    assert image_sources(pd.DataFrame({"image_path": [path]})) == [path]
    assert image_sources(pd.DataFrame({"image": [encoded]}))[0].read(4) == b"\x89PNG"
    with pytest.raises(ImageInputError, match=r"row 1: cannot read image_path '/nowhere.png'"):
        image_sources(pd.DataFrame({"image_path": [path, "/nowhere.png"]}))
    with pytest.raises(ImageInputError, match=r"row 0: cannot read image .*not base64"):
        image_sources(pd.DataFrame({"image": ["%%%"]}))
    with pytest.raises(ImageInputError, match=r"row 1: .*not an image file PIL can open"):
        image_sources(pd.DataFrame({"image": [encoded, base64.b64encode(b"plain text").decode()]}))
    with pytest.raises(ImageInputError, match="needs a column 'image_path'"):
        image_sources(pd.DataFrame({"file": [path]}))


def test_top_classes_are_ordered_and_capped_at_the_number_of_classes():
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    out = top_classes(probs, CLASSES, topk=5)
    assert out["target"].tolist() == [1, 0] and out["class_name"].tolist() == ["bee", "ant"]
    assert out["top2_class"].tolist() == ["cat", "cat"] and out["top3_prob"].tolist() == [0.2, 0.1]
    assert "top4_class" not in out.columns and top_classes(probs, CLASSES, topk=1).shape == (2, 4)


def _bundle(folder, minimal_grid, weights: list[float]) -> list:
    """A bundle of one member per weight, each with the grid's first fold model (fresh, seeded weights)."""
    from orchestrator.train.checkpoint import save_checkpoint

    trial = plan_trials(parse_grid(minimal_grid), TABLES)[0].config
    members = []
    for index, weight in enumerate(weights):
        key = f"member{index}-f0"
        (folder / key).mkdir(parents=True)
        torch.manual_seed(index)
        save_checkpoint(folder / key, create_model(trial.model.name, len(CLASSES)), {})
        (folder / key / "trial_config.json").write_text(json.dumps(trial.model_dump(mode="json")))
        members.append(MemberSpec(f"member{index}", weight, [key]))
    EnsembleSpec(CLASSES, "hill_climb", members).save(folder)
    return members


def test_the_ensemble_blends_its_members_with_their_weights(tmp_path, minimal_grid, tiny_sketch):
    paths = [str(p) for p in sorted((tiny_sketch / "train").rglob("*.png"))[:5]]
    _bundle(tmp_path / "both", minimal_grid, [0.75, 0.25])
    both = Ensemble(tmp_path / "both", device="cpu")
    assert len(both.groups) == 1  # the same framing: each image is decoded once for both models
    blended = both.probabilities(paths, batch_size=2)
    alone = []
    for index in range(2):
        folder = tmp_path / f"m{index}"
        folder.mkdir()
        (folder / f"member{index}-f0").symlink_to(tmp_path / "both" / f"member{index}-f0")
        EnsembleSpec(CLASSES, "hill_climb", [MemberSpec(f"member{index}", 1.0, [f"member{index}-f0"])]).save(folder)
        alone.append(Ensemble(folder, device="cpu").probabilities(paths, batch_size=3))
    assert blended.shape == (5, 3) and np.allclose(blended.sum(1), 1.0, atol=1e-5)
    assert np.allclose(blended, 0.75 * alone[0] + 0.25 * alone[1], atol=1e-6)

    # one member of two models (a fold model and a refit) combined by their shares, as members.Member.models gives them
    (tmp_path / "one").mkdir()
    EnsembleSpec(CLASSES, "hill_climb", [MemberSpec("one", 1.0, ["member0-f0", "member1-f0"], [0.25, 0.75])]).save(
        tmp_path / "one")
    for index in range(2):
        (tmp_path / "one" / f"member{index}-f0").symlink_to(tmp_path / "both" / f"member{index}-f0")
    shared = Ensemble(tmp_path / "one", device="cpu").probabilities(paths, batch_size=2)
    assert np.allclose(shared, 0.25 * alone[0] + 0.75 * alone[1], atol=1e-6)

    spec = EnsembleSpec.load(tmp_path / "both")  # served as the ensemble job decided: hard votes, shifted by offsets
    offsets = [0.0, 0.0, 5.0]
    EnsembleSpec(CLASSES, "vote", spec.members, offsets).save(tmp_path / "both")
    voted = Ensemble(tmp_path / "both", device="cpu").probabilities(paths, batch_size=2)
    assert np.allclose(voted, shift(blend(alone, np.array([0.75, 0.25]), "vote"), np.array(offsets)), atol=1e-6)


def test_a_model_starts_from_a_local_weights_file_when_the_grid_names_one(tmp_path, minimal_grid):
    """For clusters without internet: timm's pretrained-file override, loaded weights-only; the head is fresh."""
    from safetensors.torch import save_file

    from orchestrator.data.prepare import prepare_data
    from orchestrator.train.setup import build_trial

    torch.manual_seed(3)
    source = create_model("test_resnet", 1000)
    save_file(source.state_dict(), str(tmp_path / "weights.safetensors"))
    minimal_grid["models"] = [{"name": "test_resnet", "checkpoint": str(tmp_path / "weights.safetensors")}]
    grid = parse_grid({**minimal_grid, "tracking": {"storage": str(tmp_path / "storage")}})
    started = build_trial(plan_trials(grid, prepare_data(grid).trial_tables)[0].config).model
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(started.state_dict()[k], v) for k, v in body.items())
    assert started.state_dict()["fc.weight"].shape == (3, source.fc.in_features)
    minimal_grid["models"] = [{"name": "test_resnet", "checkpoint": str(tmp_path / "missing.safetensors")}]
    with pytest.raises(InputError, match=r"models\[0\].checkpoint: no file"):
        parse_grid(minimal_grid)
