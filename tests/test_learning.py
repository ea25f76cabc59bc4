"""The default run learns, at CI size: 01 -> 03 -> 04 executed with papermill on the shipped tiny UI base.

The default fine-tune task names the target button by one of two place words the base never read
("Click the rightmost element", "Click the bottom element"; it learned "leftmost" and "topmost"), on
screens of 3-5 large buttons where the other word names another button, so that a policy ignoring the
word scores 50%. The full default run (16,384 screens, 3,000 LoRA steps) goes from about 12% to about 83%
on the 96 held-out screens (README). Here: 4,096 screens and 1,200 LoRA steps (under three minutes), where
12.5% -> 71.9% was measured; the test asks for at least 60% after (ten points above the blind baseline)
and at most 30% before, on 96 held-out screens.
"""

import pytest

from uivlm_helpers.workbook import runner

CI_SIZE = {"TRAIN_SIZE": 4096, "EVAL_SIZE": 96, "MAX_STEPS": 1200, "LEARNING_RATE": 2e-3, "BATCH_SIZE": 16,
           "EVAL_SAMPLES": 96, "LIVE_TASKS": ""}


@pytest.mark.slow
def test_lora_fine_tune_teaches_the_base_two_new_place_words(tmp_path):
    runner.run_workbook(tmp_path, CI_SIZE, notebooks=("01_setup", "03_lora_train", "04_eval"), progress=False)
    trained = runner.read_results(tmp_path, "03_lora_train")
    assert trained["global_step"] == CI_SIZE["MAX_STEPS"]
    metrics = runner.read_results(tmp_path, "04_eval")["metrics"]
    before, after = metrics["base"], metrics["fine-tuned"]
    assert before["n"] == after["n"] == 96
    assert before["click_accuracy"] <= 0.30, before
    assert after["click_accuracy"] >= 0.60, after
    # The records carry their distractors through data prep, 03 and 04: every screen has exactly one
    # other button that the other new word names, so clicking either one at random scores 50%.
    assert before["blind_baseline"] == after["blind_baseline"] == pytest.approx(0.5), after
    assert set(after["by_candidates"]) == {"2"}
    assert after["distractor_click_rate"] < after["click_accuracy"]

